"""Mutation table of ch03_transformer: position encodings, attention, layer norm, a block,
cross-attention with a source padding mask.

The format is in ``mutants/__init__.py``.
"""

from mutants import Correct, Mutant

SINUSOIDAL = """\
    pos = np.arange(T)[:, None]  # (T, 1)
    angles = pos / 10000 ** (np.arange(0, d, 2) / d)  # (T, d/2)
    pe = np.zeros((T, d))
    pe[:, 0::2] = np.sin(angles)
    pe[:, 1::2] = np.cos(angles)
    return pe
"""
ANGLES = "    angles = pos / 10000 ** (np.arange(0, d, 2) / d)  # (T, d/2)"
MHA = """\
    T, d = X.shape
    d_k = d // n_heads
    Q, K, V = X @ W_q, X @ W_k, X @ W_v
    heads = []
    for h in range(n_heads):
        cols = slice(h * d_k, (h + 1) * d_k)
        weights = causal_softmax(Q[:, cols] @ K[:, cols].T / np.sqrt(d_k))
        heads.append(weights @ V[:, cols])
    return np.concatenate(heads, axis=1) @ W_o
"""
WEIGHTS = "        weights = causal_softmax(Q[:, cols] @ K[:, cols].T / np.sqrt(d_k))"
LN = """\
    mu = X.mean(axis=-1, keepdims=True)
    var = X.var(axis=-1, keepdims=True)  # divides by d
    return gain * (X - mu) / np.sqrt(var + eps) + bias
"""
LN_OUT = "    return gain * (X - mu) / np.sqrt(var + eps) + bias"
BLOCK = """\
    h = layer_norm(X, p["ln1_gain"], p["ln1_bias"])
    X = X + multi_head_attention(h, p["W_q"], p["W_k"], p["W_v"], p["W_o"], n_heads)
    h = layer_norm(X, p["ln2_gain"], p["ln2_bias"])
    return X + gelu(h @ p["W_1"] + p["b_1"]) @ p["W_2"] + p["b_2"]
"""
FFN = '    return X + gelu(h @ p["W_1"] + p["b_1"]) @ p["W_2"] + p["b_2"]'
W = 'p["W_q"], p["W_k"], p["W_v"], p["W_o"]'  # the attention weights, in order
ATTN = '    X = X + multi_head_attention(h, p["W_q"], p["W_k"], p["W_v"], p["W_o"], n_heads)'

CROSS = """\
    d_k = Y.shape[1] // n_heads
    Q, K, V = Y @ W_q, H @ W_k, H @ W_v
    keep = np.asarray(src_mask, dtype=bool)  # (S,): True for a real source token
    outputs = []
    for h in range(n_heads):
        c = slice(h * d_k, (h + 1) * d_k)  # head h's channels
        scores = Q[:, c] @ K[:, c].T / np.sqrt(d_k)  # (T, S)
        scores = np.where(keep, scores, -np.inf)  # masks columns: keys, not queries
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
        weights = e / e.sum(axis=-1, keepdims=True)
        outputs.append(weights @ V[:, c])
    return np.concatenate(outputs, axis=1) @ W_o
"""
MASK = "        scores = np.where(keep, scores, -np.inf)  # masks columns: keys, not queries"

MUTANTS: dict[str, dict[str, Mutant]] = {
    "q1": {
        "sin and cos swapped": Mutant(
            "    pe[:, 0::2] = np.sin(angles)\n    pe[:, 1::2] = np.cos(angles)",
            "    pe[:, 0::2] = np.cos(angles)\n    pe[:, 1::2] = np.sin(angles)",
            {"q1 - 1", "q1 - 2"},
            "PE[p, 2i] = \\sin",
        ),
        "exponent i/d instead of 2i/d": Mutant(
            ANGLES,
            "    angles = pos / 10000 ** (np.arange(d // 2) / d)",
            {"q1 - 1", "q1 - 2"},
            "\\frac{p}{10000^{2i/d}}",
        ),
        "sines in the first half, cosines in the second": Mutant(
            "    pe[:, 0::2] = np.sin(angles)\n    pe[:, 1::2] = np.cos(angles)",
            "    pe[:, : d // 2] = np.sin(angles)\n    pe[:, d // 2 :] = np.cos(angles)",
            {"q1 - 1", "q1 - 2"},
            "PE[p, 2i+1] = \\cos",
        ),
        "positions counted from 1": Mutant(
            "    pos = np.arange(T)[:, None]  # (T, 1)",
            "    pos = np.arange(1, T + 1)[:, None]",
            {"q1 - 1", "q1 - 2"},
            "for position $p$",
        ),
        "an integer table": Mutant(
            "    pe = np.zeros((T, d))",
            "    pe = np.zeros((T, d), dtype=int)",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
            "Return a float array",
        ),
        "the table transposed, (d, T)": Mutant(
            "    return pe\n",
            "    return pe.T\n",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
            "the $(T, d)$ table",
        ),
        "frequencies hard-coded for the example's d = 4": Mutant(
            ANGLES,
            "    angles = pos / 10000 ** (np.array([0, 2]) / d)",
            {"q1 - 2", "q1 - 3"},
            "The tests also use other sizes",
        ),
        "multiplies by 10000^(2i/d) instead of dividing": Mutant(
            ANGLES,
            "    angles = pos * 10000 ** (np.arange(0, d, 2) / d)",
            {"q1 - 1", "q1 - 2"},
            "\\frac{p}{10000^{2i/d}}",
        ),
    },
    "q2": {
        "heads scaled by sqrt(d) instead of sqrt(d_k)": Mutant(
            WEIGHTS,
            "        weights = causal_softmax(Q[:, cols] @ K[:, cols].T / np.sqrt(d))",
            {"q2 - 2"},
            "$\\mathrm{softmax}(Q_h K_h^\\top / \\sqrt{d_k} + M)\\,V_h$",
        ),
        "output projection W_o forgotten": Mutant(
            "    return np.concatenate(heads, axis=1) @ W_o",
            "    return np.concatenate(heads, axis=1)",
            {"q2 - 1", "q2 - 2"},
            "multiply by $W^O$",
        ),
        "heads take every n_heads-th channel": Mutant(
            "        cols = slice(h * d_k, (h + 1) * d_k)",
            "        cols = slice(h, d, n_heads)",
            {"q2 - 1", "q2 - 2"},
            "head $h$ uses columns\n$h d_k, \\dots, (h+1) d_k - 1$",
        ),
        "scores transposed, K_h Q_h^T": Mutant(
            WEIGHTS,
            "        weights = causal_softmax(K[:, cols] @ Q[:, cols].T / np.sqrt(d_k))",
            {"q2 - 2"},
            "$\\mathrm{softmax}(Q_h K_h^\\top / \\sqrt{d_k} + M)\\,V_h$",
        ),
        "no causal mask (a plain softmax)": Mutant(
            WEIGHTS,
            "        s = Q[:, cols] @ K[:, cols].T / np.sqrt(d_k)\n"
            "        weights = np.exp(s - s.max(axis=-1, keepdims=True))\n"
            "        weights /= weights.sum(axis=-1, keepdims=True)",
            {"q2 - 1", "q2 - 2", "q2 - 3"},
            "with $M$ hiding later positions",
        ),
        "n_heads ignored: one head over every channel": Mutant(
            "    d_k = d // n_heads\n",
            "    d_k, n_heads = d, 1\n",
            {"q2 - 2"},
            "split the $d$\nchannels into `n_heads` heads",
        ),
        "keys projected with W_q": Mutant(
            "    Q, K, V = X @ W_q, X @ W_k, X @ W_v",
            "    Q, K, V = X @ W_q, X @ W_q, X @ W_v",
            {"q2 - 2"},
            "$K = XW^K$",
        ),
        "a softmax of its own, without the stability step": Mutant(
            WEIGHTS,
            "        s = Q[:, cols] @ K[:, cols].T / np.sqrt(d_k)\n"
            "        e = np.where(np.tril(np.ones((T, T), dtype=bool)), np.exp(s), 0.0)\n"
            "        weights = e / e.sum(axis=-1, keepdims=True)",
            {"q2 - 2"},
            "A numerically stable `causal_softmax` is given; use it",
        ),
        "heads stacked along the positions": Mutant(
            "np.concatenate(heads, axis=1)",
            "np.concatenate(heads, axis=0)",
            {"q2 - 1", "q2 - 2", "q2 - 3"},
            "Put\nthe heads' $(T, d_k)$ outputs side by side again",
        ),
    },
    "q3": {
        "variance divided by d - 1": Mutant(
            "    var = X.var(axis=-1, keepdims=True)  # divides by d",
            "    var = X.var(axis=-1, keepdims=True, ddof=1)",
            {"q3 - 1", "q3 - 2"},
            "$\\sigma^2$ divides by $d$, not $d - 1$",
        ),
        "normalises the columns (axis 0)": Mutant(
            LN,
            "    mu = X.mean(axis=0, keepdims=True)\n"
            "    var = X.var(axis=0, keepdims=True)\n"
            "    return gain * (X - mu) / np.sqrt(var + eps) + bias\n",
            {"q3 - 1", "q3 - 2"},
            "normalize each row of `X`",
        ),
        "axis 1: right for (T, d), wrong for (B, T, d)": Mutant(
            LN,
            "    mu = X.mean(axis=1, keepdims=True)\n"
            "    var = X.var(axis=1, keepdims=True)\n"
            "    return gain * (X - mu) / np.sqrt(var + eps) + bias\n",
            {"q3 - 2"},
            "normalize over the last axis",
        ),
        "one mean and variance for the whole array": Mutant(
            LN,
            "    mu, var = X.mean(), X.var()\n"
            "    return gain * (X - mu) / np.sqrt(var + eps) + bias\n",
            {"q3 - 1", "q3 - 2"},
            "normalize each row of `X`",
        ),
        "eps added outside the square root": Mutant(
            LN_OUT,
            "    return gain * (X - mu) / (np.sqrt(var) + eps) + bias",
            {"q3 - 2"},
            "\\sqrt{\\sigma^2 + \\epsilon}",
        ),
        "eps fixed at 1e-5 (the argument ignored)": Mutant(
            LN_OUT,
            "    return gain * (X - mu) / np.sqrt(var + 1e-5) + bias",
            {"q3 - 2"},
            "Use the\nargument `eps`",
        ),
        "no eps: equal entries divide 0 by 0": Mutant(
            LN_OUT,
            "    return gain * (X - mu) / np.sqrt(var) + bias",
            {"q3 - 2"},
            "\\sqrt{\\sigma^2 + \\epsilon}",
        ),
        "bias added before the gain": Mutant(
            LN_OUT,
            "    return gain * ((X - mu) / np.sqrt(var + eps) + bias)",
            {"q3 - 2"},
            "then scale by `gain` and shift by `bias`",
        ),
        "centres X in place": Mutant(
            LN,
            "    X -= X.mean(axis=-1, keepdims=True)\n"
            "    return gain * X / np.sqrt(X.var(axis=-1, keepdims=True) + eps) + bias\n",
            {"q3 - 2"},
            "do not change `X`",
        ),
        "gain and bias swapped": Mutant(
            LN_OUT,
            "    return bias * (X - mu) / np.sqrt(var + eps) + gain",
            {"q3 - 1", "q3 - 2"},
            "then scale by `gain` and shift by `bias`",
        ),
    },
    "q4": {
        "residual added to the normalised input": Mutant(
            FFN,
            '    return h + gelu(h @ p["W_1"] + p["b_1"]) @ p["W_2"] + p["b_2"]',
            {"q4 - 1", "q4 - 2"},
            "add each sub-layer's output to its input",
        ),
        "post-norm: the sub-layers' outputs normalised": Mutant(
            BLOCK,
            f"    X = X + multi_head_attention(X, {W}, n_heads)\n"
            '    X = layer_norm(X, p["ln1_gain"], p["ln1_bias"])\n'
            '    X = X + gelu(X @ p["W_1"] + p["b_1"]) @ p["W_2"] + p["b_2"]\n'
            '    return layer_norm(X, p["ln2_gain"], p["ln2_bias"])\n',
            {"q4 - 1", "q4 - 2"},
            "Normalize the input of each sub-layer, not its output\n(pre-norm)",
        ),
        "LN1's gain and bias in both norms": Mutant(
            '    h = layer_norm(X, p["ln2_gain"], p["ln2_bias"])',
            '    h = layer_norm(X, p["ln1_gain"], p["ln1_bias"])',
            {"q4 - 2"},
            '$\\mathrm{LN}_2$ uses\n`p["ln2_gain"]`, `p["ln2_bias"]`',
        ),
        "the feed-forward reads the block's input, not the attention's output": Mutant(
            BLOCK,
            '    h = layer_norm(X, p["ln1_gain"], p["ln1_bias"])\n'
            f"    Y = X + multi_head_attention(h, {W}, n_heads)\n"
            '    h = layer_norm(X, p["ln2_gain"], p["ln2_bias"])\n'
            '    return Y + gelu(h @ p["W_1"] + p["b_1"]) @ p["W_2"] + p["b_2"]\n',
            {"q4 - 2"},
            "X \\leftarrow X + \\mathrm{FFN}(\\mathrm{LN}_2(X))",
        ),
        "no GELU": Mutant(
            'gelu(h @ p["W_1"] + p["b_1"])',
            '(h @ p["W_1"] + p["b_1"])',
            {"q4 - 2"},
            "\\mathrm{FFN}(x) = \\mathrm{GELU}(x W_1 + b_1) W_2 + b_2",
        ),
        "ReLU instead of GELU": Mutant(
            'gelu(h @ p["W_1"] + p["b_1"])',
            'np.maximum(0, h @ p["W_1"] + p["b_1"])',
            {"q4 - 2"},
            "A `gelu` is given",
        ),
        "b_2 forgotten": Mutant(
            FFN,
            '    return X + gelu(h @ p["W_1"] + p["b_1"]) @ p["W_2"]',
            {"q4 - 2"},
            "\\mathrm{FFN}(x) = \\mathrm{GELU}(x W_1 + b_1) W_2 + b_2",
        ),
        "one head, whatever n_heads says": Mutant(
            'p["W_o"], n_heads)', 'p["W_o"], 1)', {"q4 - 2"}, 'MHA uses `p["W_q"]`'
        ),
        "attention reads X, not LN1(X)": Mutant(
            ATTN,
            '    X = X + multi_head_attention(X, p["W_q"], p["W_k"], p["W_v"], p["W_o"], n_heads)',
            {"q4 - 2"},
            "X \\leftarrow X + \\mathrm{MHA}(\\mathrm{LN}_1(X))",
        ),
        "residual added in place (X +=)": Mutant(
            ATTN,
            '    X += multi_head_attention(h, p["W_q"], p["W_k"], p["W_v"], p["W_o"], n_heads)',
            {"q4 - 2"},
            "Do not\nchange `X`",
        ),
    },
    "q5": {
        "padding scores set to 0 instead of -inf": Mutant(
            MASK,
            "        scores = np.where(keep, scores, 0.0)",
            {"q5 - 1", "q5 - 2", "q5 - 3"},
            "-\\infty & \\text{if src\\_mask}[s] = 0",
        ),
        "no padding mask": Mutant(
            MASK,
            "        scores = scores",
            {"q5 - 1", "q5 - 2", "q5 - 3"},
            "so that padding gets a weight of exactly 0",
        ),
        "the mask read the wrong way round (1 = padding)": Mutant(
            "    keep = np.asarray(src_mask, dtype=bool)",
            "    keep = np.asarray(src_mask) == 0",
            {"q5 - 1", "q5 - 2", "q5 - 3"},
            "1 for a real source token, 0 for\npadding",
        ),
        "a causal mask too, as in question 2": Mutant(
            MASK,
            "        causal = np.tril(np.ones((len(Y), len(keep)), dtype=bool))\n"
            "        scores = np.where(keep & causal, scores, -np.inf)",
            {"q5 - 1", "q5 - 2", "q5 - 3"},
            "There is no causal mask",
        ),
        "keys and values from Y (self-attention)": Mutant(
            "    Q, K, V = Y @ W_q, H @ W_k, H @ W_v",
            "    Q, K, V = Y @ W_q, Y @ W_k, Y @ W_v",
            {"q5 - 1", "q5 - 2", "q5 - 3"},
            "$K = HW^K$, $V = HW^V$",
        ),
        "the mask applied to the queries (rows)": Mutant(
            MASK,
            "        scores = np.where(keep[:, None], scores, -np.inf)",
            {"q5 - 1", "q5 - 2", "q5 - 3"},
            "every target position may read every real source token",
        ),
        "softmax over every key, padding zeroed afterwards": Mutant(
            MASK + "\n        e = np.exp(scores - scores.max(axis=-1, keepdims=True))\n"
            "        weights = e / e.sum(axis=-1, keepdims=True)",
            "        e = np.exp(scores - scores.max(axis=-1, keepdims=True))\n"
            "        weights = e / e.sum(axis=-1, keepdims=True) * keep",
            {"q5 - 1", "q5 - 2", "q5 - 3"},
            "each row's weights over the real tokens sum\nto 1",
        ),
        "no max subtraction (overflows)": Mutant(
            "        e = np.exp(scores - scores.max(axis=-1, keepdims=True))",
            "        e = np.exp(scores)",
            {"q5 - 3"},
            "stable for large scores (subtract each row's maximum)",
        ),
        "scaled by sqrt(d) instead of sqrt(d_k)": Mutant(
            "        scores = Q[:, c] @ K[:, c].T / np.sqrt(d_k)  # (T, S)",
            "        scores = Q[:, c] @ K[:, c].T / np.sqrt(Y.shape[1])",
            {"q5 - 2"},
            "\\frac{Q_h K_h^\\top}{\\sqrt{d_k}}",
        ),
        "output projection W_o forgotten": Mutant(
            "    return np.concatenate(outputs, axis=1) @ W_o",
            "    return np.concatenate(outputs, axis=1)",
            {"q5 - 1", "q5 - 2", "q5 - 3"},
            "multiply by $W^O$",
        ),
    },
}

CORRECT: dict[str, dict[str, Correct]] = {
    "q1": {
        "a double loop with math.sin and math.cos": Correct(
            SINUSOIDAL,
            "    import math\n\n"
            "    pe = np.zeros((T, d))\n"
            "    for p in range(T):\n"
            "        for i in range(d // 2):\n"
            "            angle = p / 10000 ** (2 * i / d)\n"
            "            pe[p, 2 * i], pe[p, 2 * i + 1] = math.sin(angle), math.cos(angle)\n"
            "    return pe\n",
        ),
        "frequencies as exp(-2i ln(10000) / d), sin and cos stacked and reshaped": Correct(
            SINUSOIDAL,
            "    freqs = np.exp(-np.log(10000.0) * np.arange(0, d, 2) / d)  # (d/2,)\n"
            "    angles = np.outer(np.arange(T), freqs)  # (T, d/2)\n"
            "    return np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(T, d)\n",
        ),
    },
    "q2": {
        "all heads at once: reshape to (n_heads, T, d_k) and einsum": Correct(
            MHA,
            "    T, d = X.shape\n"
            "    d_k = d // n_heads\n"
            "    Q, K, V = ((X @ W).reshape(T, n_heads, d_k).transpose(1, 0, 2)\n"
            "               for W in (W_q, W_k, W_v))  # (n_heads, T, d_k)\n"
            '    s = np.einsum("htk,hsk->hts", Q, K) / np.sqrt(d_k)\n'
            "    s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)\n"
            "    w = np.exp(s - s.max(axis=-1, keepdims=True))\n"
            "    w /= w.sum(axis=-1, keepdims=True)\n"
            "    return (w @ V).transpose(1, 0, 2).reshape(T, d) @ W_o\n",
        ),
        "torch's scaled_dot_product_attention, one batch of heads": Correct(
            MHA,
            "    import torch\n"
            "    import torch.nn.functional as F\n\n"
            "    T, d = X.shape\n\n"
            "    def heads(W):  # (T, d) -> (n_heads, T, d_k)\n"
            "        return torch.from_numpy(X @ W).reshape(T, n_heads, -1).transpose(0, 1)\n\n"
            "    out = F.scaled_dot_product_attention(heads(W_q), heads(W_k), heads(W_v),\n"
            "                                         is_causal=True)\n"
            "    return out.transpose(0, 1).reshape(T, d).numpy() @ W_o\n",
        ),
    },
    "q3": {
        "torch.nn.functional.layer_norm in float64": Correct(
            LN,
            "    import torch\n"
            "    import torch.nn.functional as F\n\n"
            "    t = [torch.as_tensor(np.asarray(a, dtype=np.float64)) for a in (X, gain, bias)]\n"
            "    return F.layer_norm(t[0], t[0].shape[-1:], t[1], t[2], eps).numpy()\n",
        ),
        "the mean of squared deviations, written out": Correct(
            LN,
            "    centred = X - X.mean(axis=-1, keepdims=True)\n"
            "    var = (centred**2).mean(axis=-1, keepdims=True)\n"
            "    return centred / np.sqrt(var + eps) * gain + bias\n",
        ),
    },
    "q4": {
        "the two sub-layers as a loop over (norm, function)": Correct(
            BLOCK,
            "    def attention(h):\n"
            f"        return multi_head_attention(h, {W}, n_heads)\n\n"
            "    def ffn(h):\n"
            '        return gelu(h @ p["W_1"] + p["b_1"]) @ p["W_2"] + p["b_2"]\n\n'
            '    for norm, sublayer in (("ln1", attention), ("ln2", ffn)):\n'
            '        X = X + sublayer(layer_norm(X, p[norm + "_gain"], p[norm + "_bias"]))\n'
            "    return X\n",
        ),
    },
    "q5": {
        "torch's scaled_dot_product_attention with a boolean mask": Correct(
            CROSS,
            "    import torch\n"
            "    import torch.nn.functional as F\n\n"
            "    T, d = Y.shape\n\n"
            "    def heads(A, W):  # (n, d) -> (n_heads, n, d_k)\n"
            "        out = torch.from_numpy(A @ W).reshape(len(A), n_heads, -1)\n"
            "        return out.transpose(0, 1)\n\n"
            "    keep = torch.as_tensor(np.asarray(src_mask) != 0)  # (S,): over keys\n"
            "    q, k, v = heads(Y, W_q), heads(H, W_k), heads(H, W_v)\n"
            "    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)\n"
            "    return out.transpose(0, 1).reshape(T, d).numpy() @ W_o\n",
        ),
        "all heads at once with einsum, padding dropped before the softmax": Correct(
            CROSS,
            "    T, d = Y.shape\n"
            "    d_k = d // n_heads\n"
            "    real = np.flatnonzero(np.asarray(src_mask))  # keep only the real keys\n"
            "    Q = (Y @ W_q).reshape(T, n_heads, d_k)\n"
            "    K = (H[real] @ W_k).reshape(len(real), n_heads, d_k)\n"
            "    V = (H[real] @ W_v).reshape(len(real), n_heads, d_k)\n"
            '    s = np.einsum("thk,shk->hts", Q, K) / np.sqrt(d_k)\n'
            "    w = np.exp(s - s.max(axis=-1, keepdims=True))\n"
            "    w /= w.sum(axis=-1, keepdims=True)\n"
            '    return np.einsum("hts,shk->thk", w, V).reshape(T, d) @ W_o\n',
        ),
    },
}
