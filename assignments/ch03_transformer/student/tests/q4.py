from otter.test_files import test_case

OK_FORMAT = False

name = "q4"
points = [1]

@test_case(points=None, hidden=False)
def test_q4_zero_weights(transformer_block):
    import numpy as np

    def layer_norm(X, gain, bias, eps=1e-05):
        mu = X.mean(axis=-1, keepdims=True)
        return gain * (X - mu) / np.sqrt(X.var(axis=-1, keepdims=True) + eps) + bias

    def multi_head_attention(X, W_q, W_k, W_v, W_o, n_heads):
        T, d = X.shape
        Q, K, V = (X @ W_q, X @ W_k, X @ W_v)
        d_k, out = (d // n_heads, np.zeros((T, d)))
        for h in range(n_heads):
            c = slice(h * d_k, (h + 1) * d_k)
            s = Q[:, c] @ K[:, c].T / np.sqrt(d_k)
            s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
            w = np.exp(s - s.max(axis=1, keepdims=True))
            out[:, c] = w / w.sum(axis=1, keepdims=True) @ V[:, c]
        return out @ W_o
    d = 4
    p = {name: np.zeros((d, d)) for name in ('W_q', 'W_k', 'W_v', 'W_o')}
    p.update(ln1_gain=np.ones(d), ln1_bias=np.zeros(d), ln2_gain=np.ones(d), ln2_bias=np.zeros(d), W_1=np.zeros((d, 4 * d)), b_1=np.zeros(4 * d), W_2=np.zeros((4 * d, d)), b_2=np.zeros(d))
    X = np.arange(12.0).reshape(3, 4)
    env = transformer_block.__globals__
    saved = (env.get('layer_norm'), env.get('multi_head_attention'))
    env['layer_norm'], env['multi_head_attention'] = (layer_norm, multi_head_attention)
    try:
        out = transformer_block(X, p, n_heads=2)
    finally:
        env['layer_norm'], env['multi_head_attention'] = saved
    assert np.allclose(out, X), 'with all-zero sub-layers the residual connections return X'

