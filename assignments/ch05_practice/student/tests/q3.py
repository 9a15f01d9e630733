from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = [1]

@test_case(points=None, hidden=False)
def test_q3_example(lr_at):
    got = [round(lr_at(it, 1.0, 0.1, 4, 14), 4) for it in (0, 3, 4, 9, 14, 100)]
    assert got == [0.25, 1.0, 1.0, 0.55, 0.1, 0.1], f'got {got}'

