from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = [1]

@test_case(points=None, hidden=False)
def test_q1_abab(bigram_counts):
    got = bigram_counts(list('abab'))
    assert got == {('a', 'b'): 2, ('b', 'a'): 1}, f"list('abab') gave {got}"

