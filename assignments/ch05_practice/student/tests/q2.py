from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = [1]

@test_case(points=None, hidden=False)
def test_q2_example(top_p_filter):
    import numpy as np
    logits = np.log(np.array([0.2, 0.5, 0.3]))
    got = top_p_filter(logits, 0.7)
    assert np.array_equal(np.isfinite(got), [False, True, True]), f'got {got}'

