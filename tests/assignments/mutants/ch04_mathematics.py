"""Mutation table of ch04_mathematics: masked softmax, one attention head, GPT-2's size.

The format is in ``mutants/__init__.py``.
"""

from mutants import Correct, Mutant

SOFTMAX = """\
    z = np.where(mask, scores, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)  # the largest allowed score becomes 0
    e = np.where(mask, np.exp(z), 0.0)
    return e / e.sum(axis=-1, keepdims=True)
"""
HEAD = """\
    Q, K, V = X @ W_q, X @ W_k, X @ W_v
    scores = Q @ K.T / np.sqrt(W_k.shape[1])
    mask = np.tril(np.ones((X.shape[0], X.shape[0]), dtype=bool))
    return masked_softmax(scores, mask) @ V
"""
COUNT = """\
    norms = 2 * (2 * d)
    attn = d * 3 * d + 3 * d + d * d + d
    ffn = d * 4 * d + 4 * d + 4 * d * d + d
    return V * d + T_max * d + L * (norms + attn + ffn) + 2 * d
"""
TOTAL = "    return V * d + T_max * d + L * (norms + attn + ffn) + 2 * d"

MUTANTS: dict[str, dict[str, Mutant]] = {
    "q1": {
        "softmax without subtracting the maximum": Mutant(
            "    z = z - z.max(axis=-1, keepdims=True)  # the largest allowed score becomes 0",
            "    z = z + 0.0",
            {"q1 - 2"},
            "subtracting $m$ keeps `np.exp` from overflowing",
        ),
        "maximum over every entry, masked ones included": Mutant(
            "    z = z - z.max(axis=-1, keepdims=True)",
            "    z = z - scores.max(axis=-1, keepdims=True)",
            {"q1 - 2"},
            "$m$ the row's largest allowed score",
        ),
        "masked entries zeroed by multiplying exp(scores) with the mask": Mutant(
            SOFTMAX,
            "    m = np.where(mask, scores, -np.inf).max(axis=-1, keepdims=True)\n"
            "    e = np.exp(scores - m) * mask  # masked entries times 0\n"
            "    return e / e.sum(axis=-1, keepdims=True)\n",
            {"q1 - 2"},
            "disallowed entries get exactly 0",
        ),
        "masked entries filled with -1e9 instead of -inf": Mutant(
            "    z = np.where(mask, scores, -np.inf)",
            "    z = np.where(mask, scores, -1e9)",
            {"q1 - 2"},
            "$m$ the row's largest allowed score",
        ),
        "one maximum for the whole array, not one per row": Mutant(
            "z.max(axis=-1, keepdims=True)",
            "z.max()",
            {"q1 - 2"},
            "$m$ the row's largest allowed score",
        ),
        "row sums without keepdims (divides columns when there are several rows)": Mutant(
            "    return e / e.sum(axis=-1, keepdims=True)",
            "    return e / e.sum(axis=-1)",
            {"q1 - 3"},
            "Each row of the result is $\\mathrm{softmax}$ over the allowed entries only",
        ),
        "a causal mask of its own instead of the argument": Mutant(
            "    z = np.where(mask, scores, -np.inf)",
            "    mask = np.tril(np.ones(scores.shape, dtype=bool))\n"
            "    z = np.where(mask, scores, -np.inf)",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
            "`mask` a boolean array of the same shape where `True` means *allowed*",
        ),
        "masks scores in place": Mutant(
            "    z = np.where(mask, scores, -np.inf)",
            "    scores[~mask] = -np.inf\n    z = scores",
            {"q1 - 3"},
            "do not change `scores` or `mask`",
        ),
    },
    "q2": {
        "attention without V": Mutant(
            "    return masked_softmax(scores, mask) @ V",
            "    return masked_softmax(scores, mask)",
            {"q2 - 1", "q2 - 3"},
            "Do not forget $V$",
        ),
        "scores not scaled by sqrt(d_k)": Mutant(
            "    scores = Q @ K.T / np.sqrt(W_k.shape[1])",
            "    scores = Q @ K.T",
            {"q2 - 3"},
            "the scores $QK^\\top / \\sqrt{d_k}$",
        ),
        "scaled by sqrt(d), the width of X": Mutant(
            "np.sqrt(W_k.shape[1])",
            "np.sqrt(X.shape[1])",
            {"q2 - 3"},
            "the scores $QK^\\top / \\sqrt{d_k}$",
        ),
        "scale hard-coded to the public example's sqrt(2)": Mutant(
            "np.sqrt(W_k.shape[1])",
            "np.sqrt(2)",
            {"q2 - 3"},
            "the scores $QK^\\top / \\sqrt{d_k}$",
        ),
        "keys projected with W_q": Mutant(
            "    Q, K, V = X @ W_q, X @ W_k, X @ W_v",
            "    Q, K, V = X @ W_q, X @ W_q, X @ W_v",
            {"q2 - 3"},
            "(three different projections)",
        ),
        "scores transposed, K Q^T": Mutant(
            "    scores = Q @ K.T / np.sqrt(W_k.shape[1])",
            "    scores = K @ Q.T / np.sqrt(W_k.shape[1])",
            {"q2 - 3"},
            "the scores $QK^\\top / \\sqrt{d_k}$",
        ),
        "mask upside down: each position sees the future": Mutant(
            "    mask = np.tril(",
            "    mask = np.triu(",
            {"q2 - 1", "q2 - 2", "q2 - 3"},
            "position $t$ may attend to\npositions $s \\le t$ only",
        ),
        "mask without the diagonal: a position may not see itself": Mutant(
            "dtype=bool))\n    return masked_softmax",
            "dtype=bool), k=-1)\n    return masked_softmax",
            {"q2 - 1", "q2 - 2", "q2 - 3"},
            "position $t$ may attend to\npositions $s \\le t$ only",
        ),
        "a softmax of its own, without the stability step": Mutant(
            "    return masked_softmax(scores, mask) @ V",
            "    e = np.where(mask, np.exp(scores), 0.0)\n"
            "    return e / e.sum(axis=-1, keepdims=True) @ V",
            {"q2 - 3"},
            "the weights with your `masked_softmax`",
        ),
    },
    "q3": {
        "position embedding forgotten": Mutant(
            TOTAL,
            "    return V * d + L * (norms + attn + ffn) + 2 * d",
            {"q3 - 1", "q3 - 2"},
            "a learned position embedding\n($T_{max} \\times d$)",
        ),
        "output layer counted again (untied)": Mutant(
            TOTAL,
            "    return 2 * V * d + T_max * d + L * (norms + attn + ffn) + 2 * d",
            {"q3 - 1", "q3 - 2"},
            "the output layer reuses the token embedding (tied weights: no new parameters)",
        ),
        "LayerNorms without their bias": Mutant(
            "    norms = 2 * (2 * d)",
            "    norms = 2 * d",
            {"q3 - 1", "q3 - 2"},
            "two LayerNorms (a weight and a bias of\nsize $d$ each)",
        ),
        "final LayerNorm forgotten": Mutant(
            TOTAL,
            "    return V * d + T_max * d + L * (norms + attn + ffn)",
            {"q3 - 1", "q3 - 2"},
            "A final LayerNorm ($2d$)\nfollows",
        ),
        "vocabulary fixed at GPT-2's 50,257 (V ignored)": Mutant(
            "    return V * d + T_max",
            "    return 50257 * d + T_max",
            {"q3 - 2"},
            "so use every argument",
        ),
        "context fixed at GPT-2's 1,024 (T_max ignored)": Mutant(
            "T_max * d + L",
            "1024 * d + L",
            {"q3 - 2"},
            "so use every argument",
        ),
        "hard-codes the public example": Mutant(
            COUNT,
            "    return 124_439_808\n",
            {"q3 - 2"},
            "The tests also try other shapes",
        ),
        "squares with math.pow: a float": Mutant(
            "    attn = d * 3 * d + 3 * d + d * d + d",
            "    import math\n\n    attn = 4 * math.pow(d, 2) + 4 * d",
            {"q3 - 2"},
            "the exact total as an `int`",
        ),
    },
}

CORRECT: dict[str, dict[str, Correct]] = {
    "q1": {
        "log-sum-exp with np.logaddexp.reduce": Correct(
            SOFTMAX,
            "    z = np.where(mask, scores, -np.inf)\n"
            "    log_total = np.logaddexp.reduce(z, axis=-1, keepdims=True)\n"
            "    return np.where(mask, np.exp(z - log_total), 0.0)\n",
        ),
        "scipy.special.softmax of the -inf-filled scores": Correct(
            SOFTMAX,
            "    from scipy.special import softmax\n\n"
            "    return softmax(np.where(mask, scores, -np.inf), axis=-1)\n",
        ),
    },
    "q2": {
        "einsum and an inline softmax over a triu -inf mask": Correct(
            HEAD,
            "    Q, K, V = X @ W_q, X @ W_k, X @ W_v\n"
            "    T, d_k = Q.shape\n"
            '    scores = np.einsum("td,sd->ts", Q, K) / np.sqrt(d_k)\n'
            "    scores[np.triu_indices(T, k=1)] = -np.inf\n"
            "    w = np.exp(scores - scores.max(axis=1, keepdims=True))\n"
            "    return (w / w.sum(axis=1, keepdims=True)) @ V\n",
        ),
        "torch's scaled_dot_product_attention, is_causal=True": Correct(
            HEAD,
            "    import torch\n"
            "    import torch.nn.functional as F\n\n"
            "    q, k, v = (torch.from_numpy(X @ W) for W in (W_q, W_k, W_v))\n"
            "    return F.scaled_dot_product_attention(q, k, v, is_causal=True).numpy()\n",
        ),
    },
    "q3": {
        "the sum of every tensor's size, from a list of shapes": Correct(
            COUNT,
            "    import math\n\n"
            "    block = [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,),  # LN 1, attention\n"
            "             (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]  # LN 2, FFN\n"
            "    shapes = [(V, d), (T_max, d), *block * L, (d,), (d,)]\n"
            "    return sum(math.prod(s) for s in shapes)\n",
        ),
    },
}
