from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = [1]

@test_case(points=None, hidden=False)
def test_q1_example(sft_targets):
    import numpy as np
    got = sft_targets([5, 6, 7, 8, 9], [False, False, True, True, False])
    assert np.array_equal(got, [-100, 7, 8, -100, -100]), f'got {got}'

