from otter.test_files import test_case

OK_FORMAT = False

name = "q4"
points = [1]

@test_case(points=None, hidden=False)
def test_q4_zero_weights(transformer_block):
    import numpy as np
    d = 4
    p = {name: np.zeros((d, d)) for name in ('W_q', 'W_k', 'W_v', 'W_o')}
    p.update(ln1_gain=np.ones(d), ln1_bias=np.zeros(d), ln2_gain=np.ones(d), ln2_bias=np.zeros(d), W_1=np.zeros((d, 4 * d)), b_1=np.zeros(4 * d), W_2=np.zeros((4 * d, d)), b_2=np.zeros(d))
    X = np.arange(12.0).reshape(3, 4)
    out = transformer_block(X, p, n_heads=2)
    assert np.allclose(out, X), 'with all-zero sub-layers the residual connections return X'

