from otter.test_files import test_case

OK_FORMAT = False

name = "q7"
points = [1]

@test_case(points=None, hidden=False)
def test_q7_t5_figure(span_corrupt):
    text = 'Thank you for inviting me to your party last week .'.split()
    mask = [False, False, True, True, False, False, False, False, True, False, False]
    got = span_corrupt(text, mask, ['<X>', '<Y>', '<Z>'])
    expected = ('Thank you <X> me to your party <Y> week .'.split(), '<X> for inviting <Y> last <Z>'.split())
    assert got == expected, f'the T5 figure: expected {expected}, got {got}'

