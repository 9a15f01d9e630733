from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = [1]

@test_case(points=None, hidden=False)
def test_q1_example(sinusoidal):
    import numpy as np
    got = sinusoidal(2, 4)
    want = [[0.0, 1.0, 0.0, 1.0], [0.84147098, 0.54030231, 0.00999983, 0.99995]]
    assert np.shape(got) == (2, 4), f'expected shape (2, 4), got {np.shape(got)}'
    assert np.allclose(got, want, atol=1e-06), f'got {got}'

