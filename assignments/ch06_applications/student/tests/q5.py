from otter.test_files import test_case

OK_FORMAT = False

name = "q5"
points = [1, 1]

@test_case(points=None, hidden=False)
def test_q5_recall_at_k(recall_at_k):
    ranked, relevant = (['p3', 'p1', 'p7', 'p2'], {'p1', 'p2'})
    got = [recall_at_k(ranked, relevant, k) for k in (1, 2, 4)]
    assert got == [0.0, 0.5, 1.0], f'recall@1, @2, @4 should be 0, 0.5, 1, got {got}'

@test_case(points=None, hidden=False)
def test_q5_bm25(bm25_term_score):
    import math
    got = bm25_term_score(tf=2, doc_len=20, avg_doc_len=10, n_docs=10, doc_freq=1)
    expected = math.log(22 / 3) * 5 / 4.625
    assert got is not None and math.isclose(got, expected), f'expected 2.154, got {got}'

