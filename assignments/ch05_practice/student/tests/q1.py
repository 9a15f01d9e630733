from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = [1]

@test_case(points=None, hidden=False)
def test_q1_example(top_k_filter):
    import numpy as np
    got = top_k_filter(np.array([1.0, 3.0, 2.0, 0.0]), 2)
    assert np.array_equal(got, [-np.inf, 3.0, 2.0, -np.inf]), f'got {got}'

