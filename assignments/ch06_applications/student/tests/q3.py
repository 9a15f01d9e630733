from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = [1, 1, 2]

@test_case(points=None, hidden=False)
def test_q3_clipped_precision(clipped_precision):
    import math
    hyp, ref = ('the the the the the the the'.split(), 'the cat is on the mat'.split())
    got = clipped_precision(hyp, ref, 1)
    assert got is not None and math.isclose(got, 2 / 7), f"clip 'the' to 2 matches: {got}"
    hyp, ref = ('the cat sat on the mat'.split(), 'the cat sat on the red mat'.split())
    got = clipped_precision(hyp, ref, 2)
    assert math.isclose(got, 4 / 5), f'4 of the 5 bigrams are in the reference, got {got}'

@test_case(points=None, hidden=False)
def test_q3_brevity_penalty(brevity_penalty):
    import math
    got = brevity_penalty(4, 6)
    assert got is not None and math.isclose(got, math.exp(-0.5)), f'exp(1 - 6/4), got {got}'
    assert brevity_penalty(6, 6) == 1.0, 'same length: no penalty'
    assert brevity_penalty(8, 6) == 1.0, 'longer hypothesis: no penalty (and no bonus)'

@test_case(points=None, hidden=False)
def test_q3_sentence_bleu(sentence_bleu):
    import math
    hyp, ref = ('the cat sat on the mat'.split(), 'the cat sat on the red mat'.split())
    got = sentence_bleu(hyp, ref)
    expected = 100 * math.exp(1 - 7 / 6) * 0.4 ** 0.25
    assert got is not None and math.isclose(got, expected), f'expected 67.32, got {got}'

