from otter.test_files import test_case

OK_FORMAT = False

name = "q6"
points = [1]

@test_case(points=None, hidden=False)
def test_q6_example(sgns_loss):
    import math
    import numpy as np
    got = sgns_loss(np.array([1.0, 0.0]), np.array([2.0, 1.0]), np.array([[1.0, 1.0], [-1.0, 0.0]]))
    assert got is not None and math.isclose(got, 1.753451386, rel_tol=1e-06), f'the worked example: expected 1.7535, got {got}'

