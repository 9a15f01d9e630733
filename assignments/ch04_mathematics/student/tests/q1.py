from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = [1]

@test_case(points=None, hidden=False)
def test_q1_example(masked_softmax):
    import numpy as np
    got = masked_softmax(np.array([[1.0, 2.0, 3.0]]), np.array([[True, True, False]]))
    assert np.allclose(got, [[0.26894142, 0.73105858, 0.0]]), f'got {got}'

