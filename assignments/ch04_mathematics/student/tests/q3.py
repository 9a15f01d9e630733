from otter.test_files import test_case

OK_FORMAT = False

name = "q3"
points = [1]

@test_case(points=None, hidden=False)
def test_q3_gpt2_small(gpt2_parameters):
    got = gpt2_parameters(12, 768, 50257, 1024)
    assert got == 124439808, f'GPT-2 small has 124,439,808 parameters, got {got}'

