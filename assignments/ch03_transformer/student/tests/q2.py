from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = [1]

@test_case(points=None, hidden=False)
def test_q2_shape_and_first_position(multi_head_attention):
    import numpy as np
    rng = np.random.default_rng(0)
    X, Wq, Wk, Wv, Wo = (rng.normal(size=(4, 6)), *rng.normal(size=(4, 6, 6)))
    out = multi_head_attention(X, Wq, Wk, Wv, Wo, n_heads=2)
    assert np.shape(out) == (4, 6), f'expected shape (4, 6), got {np.shape(out)}'
    assert np.allclose(out[0], X[0] @ Wv @ Wo), 'position 0 must return (x_0 W_v) W_o'

