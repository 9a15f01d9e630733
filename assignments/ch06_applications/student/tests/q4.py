from otter.test_files import test_case

OK_FORMAT = False

name = "q4"
points = [2, 1]

@test_case(points=None, hidden=False)
def test_q4_values(pass_at_k):
    import math
    got = pass_at_k(10, 3, 1)
    assert got is not None and math.isclose(got, 0.3), f'pass@1 is c / n = 0.3, got {got}'
    got = pass_at_k(10, 3, 5)
    assert math.isclose(got, 11 / 12), f'1 - C(7, 5) / C(10, 5) = 11/12, got {got}'

@test_case(points=None, hidden=False)
def test_q4_edges(pass_at_k):
    import math
    assert pass_at_k(10, 8, 3) == 1.0, 'n - c = 2 < k = 3: every draw holds a passing sample'
    assert pass_at_k(4, 4, 1) == 1.0, 'all samples pass'
    got = pass_at_k(10, 5, 5)
    assert math.isclose(got, 251 / 252), f'n - c = k: 1 of 252 draws fails, got {got}'
    assert pass_at_k(5, 0, 2) == 0.0, 'no sample passes: 0'

