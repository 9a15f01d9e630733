from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = [1]

@test_case(points=None, hidden=False)
def test_q2_example(dpo_loss):
    import numpy as np
    got = dpo_loss(np.array([-4.0]), np.array([-6.0]), np.array([-5.0]), np.array([-5.0]), 0.5)
    assert np.isclose(got, 0.31326, atol=0.0001), f'got {got}'

