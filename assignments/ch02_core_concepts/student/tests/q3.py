from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = [1]

@test_case(points=None, hidden=False)
def test_q3_abab(bpe_train):
    got = bpe_train('abab', 5)
    assert got == [((97, 98), 256), ((256, 256), 257)], f'bpe_train("abab", 5) gave {got}'

