from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = [1]

@test_case(points=None, hidden=False)
def test_q2_example(merge):
    got = merge([5, 6, 6, 7, 9, 1], (6, 7), 99)
    assert got == [5, 6, 99, 9, 1], f'merging (6, 7) -> 99 in [5, 6, 6, 7, 9, 1] gave {got}'

