from otter.test_files import test_case

OK_FORMAT = False

name = "q4"
points = [1]

@test_case(points=None, hidden=False)
def test_q4_abab(most_likely_next):
    got = most_likely_next({('a', 'b'): 2, ('b', 'a'): 1}, 'a')
    assert got == 'b', f"after 'a' comes 'b', got {got!r}"

