from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = [1]

@test_case(points=None, hidden=False)
def test_q3_abab(add_k_prob):
    import math
    counts = {('a', 'b'): 2, ('b', 'a'): 1}
    got = add_k_prob(counts, 'a', 'b', 2, 1)
    assert math.isclose(got, 0.75), f'P(b | a): expected (2 + 1) / (2 + 2) = 0.75, got {got}'
    got = add_k_prob(counts, 'a', 'a', 2, 1)
    assert math.isclose(got, 0.25), f'P(a | a): expected (0 + 1) / (2 + 2) = 0.25, got {got}'

