from otter.test_files import test_case

OK_FORMAT = False

name = "q4"
points = [1]

@test_case(points=None, hidden=False)
def test_q4_example(cosine_similarity):
    import math
    import numpy as np
    got = cosine_similarity(np.array([1.0, 0.0]), np.array([1.0, 1.0]))
    assert got is not None and math.isclose(got, 1 / math.sqrt(2)), f'(1, 0) and (1, 1): expected 1 / sqrt(2) = 0.7071, got {got}'

