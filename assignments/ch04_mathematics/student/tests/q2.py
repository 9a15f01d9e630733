from otter.test_files import test_case

OK_FORMAT = False

name = "q2"
points = [1]

@test_case(points=None, hidden=False)
def test_q2_shape_and_first_row(attention_head):
    import numpy as np

    def masked_softmax(scores, mask):
        z = np.where(mask, scores, -np.inf)
        e = np.where(mask, np.exp(z - z.max(axis=-1, keepdims=True)), 0.0)
        return e / e.sum(axis=-1, keepdims=True)
    env = attention_head.__globals__
    saved = env.get('masked_softmax')
    env['masked_softmax'] = masked_softmax
    try:
        rng = np.random.default_rng(1)
        X, Wq, Wk, Wv = (rng.normal(size=(4, 6)), *rng.normal(size=(3, 6, 2)))
        out = attention_head(X, Wq, Wk, Wv)
    finally:
        env['masked_softmax'] = saved
    assert np.shape(out) == (4, 2), f'expected shape (4, 2), got {np.shape(out)}'
    assert np.allclose(out[0], X[0] @ Wv), 'position 0 can only attend to itself: its value'

