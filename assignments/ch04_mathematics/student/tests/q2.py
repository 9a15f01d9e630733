from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = [1]

@test_case(points=None, hidden=False)
def test_q2_shape_and_first_row(attention_head):
    import numpy as np
    rng = np.random.default_rng(1)
    X, Wq, Wk, Wv = (rng.normal(size=(4, 6)), *rng.normal(size=(3, 6, 2)))
    out = attention_head(X, Wq, Wk, Wv)
    assert out.shape == (4, 2), f'expected shape (4, 2), got {np.shape(out)}'
    assert np.allclose(out[0], X[0] @ Wv), 'position 0 can only attend to itself: its value'

