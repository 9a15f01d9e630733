from otter.test_files import test_case

OK_FORMAT = False

name = "q1"
points = [1, 2]

@test_case(points=None, hidden=False)
def test_q1_confusion_matrix(confusion_matrix):
    import numpy as np
    got = confusion_matrix([1, 0, 1, 1, 0, 1], [1, 1, 0, 1, 0, 0], 2)
    assert np.array_equal(np.asarray(got), [[1, 1], [2, 2]]), f'got {got}; rows are gold'

@test_case(points=None, hidden=False)
def test_q1_precision_recall_f1(precision_recall_f1):
    import math
    got = precision_recall_f1([1, 0, 1, 1, 0, 1], [1, 1, 0, 1, 0, 0])
    assert got is not None and len(got) == 3, 'return (precision, recall, f1)'
    p, r, f1 = got
    assert math.isclose(p, 2 / 3), f'precision = TP / (TP + FP) = 2/3, got {p}'
    assert math.isclose(r, 1 / 2), f'recall = TP / (TP + FN) = 1/2, got {r}'
    assert math.isclose(f1, 4 / 7), f'F1 = 2PR / (P + R) = 4/7, got {f1}'

