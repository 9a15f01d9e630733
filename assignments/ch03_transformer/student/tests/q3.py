from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = [1]

@test_case(points=None, hidden=False)
def test_q3_standardizes(layer_norm):
    import numpy as np
    X = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 10.0, 10.0, 14.0]])
    out = layer_norm(X, np.ones(4), np.zeros(4))
    assert np.allclose(out.mean(axis=1), 0, atol=1e-06), 'each row must have mean 0'
    assert np.allclose(out.var(axis=1), 1, atol=0.001), 'each row must have variance 1'

