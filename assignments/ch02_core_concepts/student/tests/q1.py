from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = [1]

@test_case(points=None, hidden=False)
def test_q1_example(count_pairs):
    got = count_pairs([1, 2, 3, 1, 2])
    assert got == {(1, 2): 2, (2, 3): 1, (3, 1): 1}, f'[1, 2, 3, 1, 2] gave {got}'

