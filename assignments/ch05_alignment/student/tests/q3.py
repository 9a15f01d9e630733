from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = [1]

@test_case(points=None, hidden=False)
def test_q3_example(group_advantages):
    import numpy as np
    got = group_advantages(np.array([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0]), 4)
    want = [1.4997, -0.4999, -0.4999, -0.4999, 0.0, 0.0, 0.0, 0.0]
    assert np.allclose(got, want, atol=0.0001), f'got {np.round(got, 4)}'

