from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = [1]

@test_case(points=None, hidden=False)
def test_q2_uniform(perplexity):
    import math
    got = perplexity([math.log(1 / 4)] * 4)
    assert math.isclose(got, 4.0), f'four tokens with probability 1/4 each: expected 4.0, got {got}'

