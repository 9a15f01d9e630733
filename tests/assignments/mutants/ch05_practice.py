"""Mutation table of ch05_practice: top-k, top-p, the learning-rate schedule, a KV-cache step.

The format is in ``mutants/__init__.py``.
"""

from mutants import Correct, Mutant

TOP_K = """\
    kth = np.sort(logits)[::-1][min(k, len(logits)) - 1]
    return np.where(logits < kth, -np.inf, logits)
"""
KTH = "    kth = np.sort(logits)[::-1][min(k, len(logits)) - 1]"
CHECK_K = """\
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
"""
TOP_P = """\
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    mass_before = np.cumsum(probs[order]) - probs[order]
    keep = np.zeros(len(logits), dtype=bool)
    keep[order] = mass_before < p
    return np.where(keep, logits, -np.inf)
"""
LR = """\
    if it < warmup:
        return peak * (it + 1) / warmup
    if it >= decay_end:
        return floor
    progress = (it - warmup) / (decay_end - warmup)
    return floor + 0.5 * (1 + math.cos(math.pi * progress)) * (peak - floor)
"""
COSINE = "    return floor + 0.5 * (1 + math.cos(math.pi * progress)) * (peak - floor)"
STEP = """\
    K_new = np.concatenate([K_cache, k[None]], axis=0)
    V_new = np.concatenate([V_cache, v[None]], axis=0)
    scores = K_new @ q / np.sqrt(len(q))
    w = np.exp(scores - scores.max())
    w /= w.sum()
    return w @ V_new, K_new, V_new
"""
SCORES = "    scores = K_new @ q / np.sqrt(len(q))"

MUTANTS: dict[str, dict[str, Mutant]] = {
    "q1": {
        "drops the ties with the k-th": Mutant(
            "    return np.where(logits < kth, -np.inf, logits)",
            "    return np.where(logits <= kth, -np.inf, logits)",
            {"q1 - 1", "q1 - 2"},
            "entries equal to the $k$-th\nlargest stay",
        ),
        "exactly k by argsort: ties with the k-th dropped": Mutant(
            TOP_K,
            "    top = np.argsort(logits)[::-1][:k]\n"
            "    out = np.full_like(logits, -np.inf)\n"
            "    out[top] = logits[top]\n"
            "    return out\n",
            {"q1 - 2"},
            "entries equal to the $k$-th\nlargest stay",
        ),
        "filters in place": Mutant(
            "    return np.where(logits < kth, -np.inf, logits)",
            "    logits[logits < kth] = -np.inf\n    return logits",
            {"q1 - 2"},
            "Do not change `logits`",
        ),
        "the k-th smallest instead of the k-th largest": Mutant(
            KTH,
            "    kth = np.sort(logits)[min(k, len(logits)) - 1]",
            {"q1 - 1", "q1 - 2"},
            "smaller than the $k$-th largest",
        ),
        "off by one: the (k+1)-th largest": Mutant(
            KTH,
            "    kth = np.sort(logits)[::-1][min(k, len(logits) - 1)]",
            {"q1 - 1", "q1 - 2"},
            "smaller than the $k$-th largest",
        ),
        "k larger than the array raises IndexError": Mutant(
            KTH,
            "    kth = np.sort(logits)[::-1][k - 1]",
            {"q1 - 2"},
            "If $k$ is at least the number of logits, every entry stays",
        ),
        "0 instead of -inf": Mutant(
            "    return np.where(logits < kth, -np.inf, logits)",
            "    return np.where(logits < kth, 0.0, logits)",
            {"q1 - 1", "q1 - 2"},
            "is replaced by `-np.inf`",
        ),
        "always the top 2, as in the example (k ignored)": Mutant(
            KTH,
            "    kth = np.sort(logits)[::-1][1]",
            {"q1 - 2"},
            "replaced by `-np.inf`",
        ),
        "no check of k: k = 0 keeps every entry": Mutant(
            CHECK_K,
            "",
            {"q1 - 2"},
            "for $k < 1$ raise a `ValueError`",
        ),
        "checks k < 0 only: k = 0 accepted": Mutant(
            "    if k < 1:",
            "    if k < 0:",
            {"q1 - 2"},
            "for $k < 1$ raise a `ValueError`",
        ),
        "an assert instead of a ValueError": Mutant(
            CHECK_K,
            '    assert k >= 1, f"k must be at least 1, got {k}"\n',
            {"q1 - 2"},
            "raise a `ValueError`",
        ),
        "k below 1 taken as 1": Mutant(
            CHECK_K,
            "    k = max(k, 1)\n",
            {"q1 - 2"},
            "$k$ must\nbe at least 1",
        ),
        "k below 1 masks every entry": Mutant(
            CHECK_K,
            "    if k < 1:\n        return np.full_like(logits, -np.inf)\n",
            {"q1 - 2"},
            "for $k < 1$ raise a `ValueError`",
        ),
    },
    "q2": {
        "counts a token's own probability": Mutant(
            "    keep[order] = mass_before < p",
            "    keep[order] = np.cumsum(probs[order]) < p",
            {"q2 - 1", "q2 - 2"},
            "keep\na token if the probability mass of the tokens *before* it is still below $p$",
        ),
        "softmax without subtracting the maximum": Mutant(
            "    probs = np.exp(logits - logits.max())",
            "    probs = np.exp(logits)",
            {"q2 - 2"},
            "unless you subtract the maximum first",
        ),
        "keeps a token while the mass before it is <= p": Mutant(
            "    keep[order] = mass_before < p",
            "    keep[order] = mass_before <= p",
            {"q2 - 2"},
            "is still below $p$",
        ),
        "cumulative mass in vocabulary order, not sorted": Mutant(
            "    mass_before = np.cumsum(probs[order]) - probs[order]\n"
            "    keep = np.zeros(len(logits), dtype=bool)\n"
            "    keep[order] = mass_before < p",
            "    keep = np.cumsum(probs) - probs < p",
            {"q2 - 1", "q2 - 2"},
            "Sort the probabilities in decreasing order",
        ),
        "sorted in increasing order": Mutant(
            "    order = np.argsort(-probs)",
            "    order = np.argsort(probs)",
            {"q2 - 1", "q2 - 2"},
            "Sort the probabilities in decreasing order",
        ),
        "returns probabilities instead of logits": Mutant(
            "    return np.where(keep, logits, -np.inf)",
            "    return np.where(keep, probs, -np.inf)",
            {"q2 - 2"},
            "holding the kept tokens' logits (not their probabilities)",
        ),
        "filters in place": Mutant(
            "    return np.where(keep, logits, -np.inf)",
            "    logits[~keep] = -np.inf\n    return logits",
            {"q2 - 2"},
            "do not change\n`logits`",
        ),
        "keep mask left in sorted order": Mutant(
            "    keep[order] = mass_before < p",
            "    keep = mass_before < p",
            {"q2 - 1", "q2 - 2"},
            "set the others to `-np.inf`",
        ),
        "probabilities not normalised": Mutant(
            "    probs /= probs.sum()\n",
            "",
            {"q2 - 1", "q2 - 2"},
            "probabilities (softmax of the logits)",
        ),
    },
    "q3": {
        "warm-up starts at zero": Mutant(
            "        return peak * (it + 1) / warmup",
            "        return peak * it / warmup",
            {"q3 - 1", "q3 - 2"},
            "`peak * (it + 1) / warmup`",
        ),
        "warm-up includes step warmup": Mutant(
            "    if it < warmup:",
            "    if it <= warmup:",
            {"q3 - 1", "q3 - 2"},
            "for `it < warmup`",
        ),
        "decays to 0, not to floor": Mutant(
            COSINE,
            "    return 0.5 * (1 + math.cos(math.pi * progress)) * peak",
            {"q3 - 1", "q3 - 2"},
            "half a cosine from `peak` down to `floor`",
        ),
        "linear decay (the same at the midpoint)": Mutant(
            COSINE,
            "    return floor + (1 - progress) * (peak - floor)",
            {"q3 - 2"},
            "half a cosine from `peak` down to `floor`",
        ),
        "warm-up to 1, as in the example (peak ignored)": Mutant(
            "        return peak * (it + 1) / warmup",
            "        return (it + 1) / warmup",
            {"q3 - 2"},
            "`peak * (it + 1) / warmup`",
        ),
        "progress counted from step 0": Mutant(
            "    progress = (it - warmup) / (decay_end - warmup)",
            "    progress = it / decay_end",
            {"q3 - 1", "q3 - 2"},
            "`progress = (it - warmup) / (decay_end - warmup)`",
        ),
        "cosine without the 0.5": Mutant(
            COSINE,
            "    return floor + (1 + math.cos(math.pi * progress)) * (peak - floor)",
            {"q3 - 1", "q3 - 2"},
            "`floor + 0.5 * (1 + cos(pi * progress)) * (peak - floor)`",
        ),
        "0 after decay_end": Mutant(
            "        return floor\n",
            "        return 0.0\n",
            {"q3 - 1", "q3 - 2"},
            "for `it >= decay_end`: `floor`",
        ),
        "the cosine of degrees": Mutant(
            "math.cos(math.pi * progress)",
            "math.cos(180 * progress)",
            {"q3 - 1", "q3 - 2"},
            "`floor + 0.5 * (1 + cos(pi * progress)) * (peak - floor)`",
        ),
    },
    "q4": {
        "scores not scaled by sqrt(d)": Mutant(
            SCORES, "    scores = K_new @ q", {"q4 - 3"}, "$\\mathrm{softmax}(K q / \\sqrt{d})$"
        ),
        "new key and value prepended": Mutant(
            "    K_new = np.concatenate([K_cache, k[None]], axis=0)\n"
            "    V_new = np.concatenate([V_cache, v[None]], axis=0)",
            "    K_new = np.concatenate([k[None], K_cache], axis=0)\n"
            "    V_new = np.concatenate([v[None], V_cache], axis=0)",
            {"q4 - 2"},
            "Append\n`k` and `v` to the caches",
        ),
        "softmax without subtracting the maximum": Mutant(
            "    w = np.exp(scores - scores.max())",
            "    w = np.exp(scores)",
            {"q4 - 3"},
            "compute the softmax stably",
        ),
        "returns the old caches": Mutant(
            "    return w @ V_new, K_new, V_new",
            "    return w @ V_new, K_cache, V_cache",
            {"q4 - 1", "q4 - 2", "q4 - 3"},
            "the caches now have $t + 1$ rows",
        ),
        "weights the keys instead of the values": Mutant(
            "    return w @ V_new, K_new, V_new",
            "    return w @ K_new, K_new, V_new",
            {"q4 - 1", "q4 - 3"},
            "compute the attention of `q` over all $t + 1$ keys",
        ),
        "scaled by d instead of sqrt(d)": Mutant(
            SCORES,
            "    scores = K_new @ q / len(q)",
            {"q4 - 3"},
            "$\\mathrm{softmax}(K q / \\sqrt{d})$",
        ),
        "scale hard-coded to the public example's sqrt(2)": Mutant(
            SCORES,
            "    scores = K_new @ q / np.sqrt(2)",
            {"q4 - 3"},
            "$\\mathrm{softmax}(K q / \\sqrt{d})$",
        ),
        "weights not normalised": Mutant(
            "    w /= w.sum()\n", "", {"q4 - 3"}, "$\\mathrm{softmax}(K q / \\sqrt{d})$"
        ),
        "scales q in place": Mutant(
            SCORES,
            "    q /= np.sqrt(len(q))\n    scores = K_new @ q",
            {"q4 - 2"},
            "Do not change the arguments",
        ),
    },
}

CORRECT: dict[str, dict[str, Correct]] = {
    "q1": {
        "np.partition for the k-th largest": Correct(
            TOP_K,
            "    n = len(logits)\n"
            "    kth = np.partition(logits, n - min(k, n))[n - min(k, n)]\n"
            "    return np.where(logits >= kth, logits, -np.inf)\n",
        ),
        "lmlib.sampling.top_k_filter on a torch tensor": Correct(
            TOP_K,
            "    import torch\n\n"
            "    from lmlib.sampling import top_k_filter as top_k\n\n"
            "    return top_k(torch.from_numpy(logits)[None], k)[0].numpy()\n",
        ),
    },
    "q2": {
        "a loop that adds probabilities until p is reached": Correct(
            TOP_P,
            "    probs = np.exp(logits - logits.max())\n"
            "    probs /= probs.sum()\n"
            "    out = np.full(len(logits), -np.inf)\n"
            "    total = 0.0\n"
            "    for i in np.argsort(-probs):\n"
            "        if total >= p:\n"
            "            break\n"
            "        out[i] = logits[i]\n"
            "        total += probs[i]\n"
            "    return out\n",
        ),
        "lmlib.sampling.top_p_filter on a torch tensor": Correct(
            TOP_P,
            "    import torch\n\n"
            "    from lmlib.sampling import top_p_filter as top_p\n\n"
            "    return top_p(torch.from_numpy(logits)[None], p)[0].numpy()\n",
        ),
    },
    "q3": {
        "the cosine factor as cos^2 of half the angle": Correct(
            COSINE,
            "    return floor + (peak - floor) * math.cos(math.pi * progress / 2) ** 2",
        ),
        "lmlib.optim.lr_at with a TrainConfig": Correct(
            LR,
            "    from lmlib.optim import lr_at as schedule\n"
            "    from lmlib.train import TrainConfig\n\n"
            "    cfg = TrainConfig(learning_rate=peak, min_lr=floor, warmup_iters=warmup,\n"
            "                      lr_decay_iters=decay_end)\n"
            "    return schedule(it, cfg)\n",
        ),
    },
    "q4": {
        "an online softmax: one position at a time, with a running maximum": Correct(
            STEP,
            "    K_new, V_new = np.vstack([K_cache, k]), np.vstack([V_cache, v])\n"
            "    m, total, acc = -np.inf, 0.0, np.zeros_like(v, dtype=float)\n"
            "    for key, value in zip(K_new, V_new):\n"
            "        s = key @ q / np.sqrt(len(q))\n"
            "        m_new = max(m, s)\n"
            "        scale = np.exp(m - m_new)\n"
            "        total = total * scale + np.exp(s - m_new)\n"
            "        acc = acc * scale + np.exp(s - m_new) * value\n"
            "        m = m_new\n"
            "    return acc / total, K_new, V_new\n",
        ),
        "scipy.special.softmax over the stacked caches": Correct(
            STEP,
            "    from scipy.special import softmax\n\n"
            "    K_new, V_new = np.vstack([K_cache, k]), np.vstack([V_cache, v])\n"
            "    return softmax(K_new @ q / np.sqrt(q.shape[0])) @ V_new, K_new, V_new\n",
        ),
    },
}
