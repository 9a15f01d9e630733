from otter.test_files import test_case

OK_FORMAT = False

name = "q5"
points = [1]

@test_case(points=None, hidden=False)
def test_q5_example(shift_for_next_token):
    got = shift_for_next_token([10, 20, 30, 40])
    assert got == ([10, 20, 30], [20, 30, 40]), f'[10, 20, 30, 40] gave {got}'

