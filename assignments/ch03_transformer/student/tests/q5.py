from otter.test_files import test_case

OK_FORMAT = False

name = "q5"
points = [1]

@test_case(points=None, hidden=False)
def test_q5_averages_the_real_tokens(cross_attention):
    import numpy as np
    rng = np.random.default_rng(0)
    d, T, S = (4, 3, 5)
    Y, H = (rng.normal(size=(T, d)), rng.normal(size=(S, d)))
    W_k, W_v, W_o = rng.normal(size=(3, d, d))
    src_mask = np.array([1, 1, 1, 0, 0])
    out = cross_attention(Y, H, src_mask, np.zeros((d, d)), W_k, W_v, W_o, n_heads=2)
    assert np.shape(out) == (T, d), f'expected shape ({T}, {d}), got {np.shape(out)}'
    expected = (H[:3] @ W_v).mean(axis=0) @ W_o
    assert np.allclose(out, np.tile(expected, (T, 1))), "with W_q = 0 every row is the mean of the 3 real tokens' values, times W_o"

