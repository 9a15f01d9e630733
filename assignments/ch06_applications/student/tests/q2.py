from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = [1, 2]

@test_case(points=None, hidden=False)
def test_q2_lcs_length(lcs_length):
    got = lcs_length(list('ABCBDAB'), list('BDCABA'))
    assert got == 4, f'LCS of ABCBDAB and BDCABA is 4 (BCBA), got {got}'
    a, b = ('the cat sat on the mat'.split(), 'the cat was sitting on the mat'.split())
    got = lcs_length(a, b)
    assert got == 5, f"'the cat on the mat': gaps are allowed, got {got}"

@test_case(points=None, hidden=False)
def test_q2_rouge_l(rouge_l_f1):
    import math
    cand = 'the cat sat on the mat'.split()
    ref = 'the cat was sitting on the mat'.split()
    got = rouge_l_f1(cand, ref)
    assert got is not None and math.isclose(got, 10 / 13), f'expected 10/13, got {got}'

