"""Mutation table of ch01_background: bigram counts, perplexity, add-k, greedy next token.

The format is in ``mutants/__init__.py``.
"""

from mutants import Correct, Mutant

COUNTS = """\
    counts: dict[tuple[str, str], int] = {}
    # tokens[1:] is one shorter, so the last token starts no pair (no wrap-around)
    for pair in zip(tokens, tokens[1:], strict=False):
        counts[pair] = counts.get(pair, 0) + 1
    return counts
"""
PAIRS = "zip(tokens, tokens[1:], strict=False)"
PPL = "    return math.exp(-sum(log_probs) / len(log_probs))"
EMPTY = '        raise ValueError("perplexity of an empty sequence is undefined")'
TOTAL = "    context_total = sum(c for (prev, _), c in counts.items() if prev == context)"
ADD_K = "(context_total + k * vocab_size)"
GREEDY = """\
    candidates = [(-c, token) for (prev, token), c in counts.items() if prev == context]
    if not candidates:
        return None
    return min(candidates)[1]
"""

MUTANTS: dict[str, dict[str, Mutant]] = {
    "q1": {
        "bigrams wrap around": Mutant(
            PAIRS,
            "zip(tokens, tokens[1:] + tokens[:1], strict=False)",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
            "The text does not wrap around",
        ),
        "pairs that do not overlap": Mutant(
            PAIRS,
            "zip(tokens[::2], tokens[1::2], strict=False)",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
            "Pairs overlap",
        ),
        "pairs reversed: (next, previous)": Mutant(
            PAIRS,
            "zip(tokens[1:], tokens, strict=False)",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
            "each pair `(previous, next)`",
        ),
        "keys joined into strings": Mutant(
            "        counts[pair] = counts.get(pair, 0) + 1",
            "        key = pair[0] + pair[1]\n        counts[key] = counts.get(key, 0) + 1",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
            "whose keys are the pairs as tuples",
        ),
        "each pair counted once": Mutant(
            "        counts[pair] = counts.get(pair, 0) + 1",
            "        counts[pair] = 1",
            {"q1 - 1", "q1 - 2"},
            "maps each pair `(previous, next)` to its\ncount",
        ),
        "pops tokens off the caller's list": Mutant(
            COUNTS,
            "    counts = {}\n"
            "    while len(tokens) > 1:\n"
            "        pair = (tokens.pop(0), tokens[0])\n"
            "        counts[pair] = counts.get(pair, 0) + 1\n"
            "    return counts\n",
            {"q1 - 3"},
            "do not change `tokens`",
        ),
        "characters of the joined text, not tokens": Mutant(
            PAIRS,
            'zip("".join(tokens), "".join(tokens)[1:], strict=False)',
            {"q1 - 3"},
            "Tokens may be characters or words",
        ),
        "reads the first token before the loop: fails on []": Mutant(
            COUNTS,
            "    counts = {}\n"
            "    prev = tokens[0]\n"
            "    for token in tokens[1:]:\n"
            "        counts[prev, token] = counts.get((prev, token), 0) + 1\n"
            "        prev = token\n"
            "    return counts\n",
            {"q1 - 2"},
            "fewer than two tokens give `{}`",
        ),
        "a list of (pair, count) instead of a dict": Mutant(
            "    return counts\n",
            "    return list(counts.items())\n",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
            "returns a dict",
        ),
    },
    "q2": {
        "perplexity without the minus sign": Mutant(
            PPL,
            "    return math.exp(sum(log_probs) / len(log_probs))",
            {"q2 - 1", "q2 - 2"},
            "the minus sign makes the result at least 1",
        ),
        "perplexity as 2 ** nats": Mutant(
            PPL,
            "    return 2 ** (-sum(log_probs) / len(log_probs))",
            {"q2 - 1", "q2 - 2"},
            "Here the inputs are natural logs, so use `math.exp`",
        ),
        "averaged over N - 1 tokens": Mutant(
            "/ len(log_probs))",
            "/ (len(log_probs) - 1))",
            {"q2 - 1", "q2 - 2"},
            "\\frac{1}{N}\\sum_{i=1}^{N}",
        ),
        "perplexity([]) raises ZeroDivisionError": Mutant(
            EMPTY, "        pass", {"q2 - 3"}, "An empty list has no\naverage: raise `ValueError`"
        ),
        "perplexity([]) returns infinity": Mutant(
            EMPTY,
            "        return math.inf",
            {"q2 - 3"},
            "An empty list has no\naverage: raise `ValueError`",
        ),
        "ValueError without a message": Mutant(
            EMPTY,
            "        raise ValueError",
            {"q2 - 3"},
            "with a message that says so",
        ),
        "multiplies the probabilities (underflows on long texts)": Mutant(
            PPL,
            "    return math.prod(math.exp(lp) for lp in log_probs) ** (-1 / len(log_probs))",
            {"q2 - 2"},
            "work with the logs",
        ),
        "the first token's probability only (right for the uniform example)": Mutant(
            PPL,
            "    return 1 / math.exp(log_probs[0])",
            {"q2 - 2"},
            "\\frac{1}{N}\\sum_{i=1}^{N}",
        ),
        "one over the mean probability": Mutant(
            PPL,
            "    return len(log_probs) / sum(math.exp(lp) for lp in log_probs)",
            {"q2 - 2"},
            "\\exp\\Big(-\\frac{1}{N}\\sum_{i=1}^{N} \\ln p_i\\Big)",
        ),
    },
    "q3": {
        "add-k without k * V in the denominator": Mutant(
            ADD_K,
            "(context_total)",
            {"q3 - 1", "q3 - 2", "q3 - 3", "q3 - 4"},
            "The $kV$ in the denominator pays for the $k$ added to each\nof the $V$",
        ),
        "c(context) counts distinct next tokens": Mutant(
            TOTAL,
            "    context_total = sum(1 for (prev, _), c in counts.items() if prev == context)",
            {"q3 - 1", "q3 - 3", "q3 - 4"},
            "$c(a) = \\sum_{t'} c(a, t')$ is the number of bigrams that start with $a$",
        ),
        "V instead of kV in the denominator (the same for k = 1)": Mutant(
            ADD_K,
            "(context_total + vocab_size)",
            {"q3 - 2", "q3 - 3", "q3 - 4"},
            "P_k(t \\mid a) = \\frac{c(a, t) + k}{c(a) + kV}",
        ),
        "k + V instead of kV": Mutant(
            ADD_K,
            "(context_total + k + vocab_size)",
            {"q3 - 1", "q3 - 2", "q3 - 3", "q3 - 4"},
            "P_k(t \\mid a) = \\frac{c(a, t) + k}{c(a) + kV}",
        ),
        "c(context) counts every bigram": Mutant(
            TOTAL,
            "    context_total = sum(counts.values())",
            {"q3 - 1", "q3 - 2", "q3 - 3", "q3 - 4"},
            "the number of bigrams that start with $a$",
        ),
        "c(context) counts the bigrams that end with it": Mutant(
            TOTAL,
            "    context_total = sum(c for (_, nxt), c in counts.items() if nxt == context)",
            {"q3 - 1", "q3 - 4"},
            "the number of bigrams that start with $a$",
        ),
        "an unseen context gets probability 0": Mutant(
            TOTAL,
            f"{TOTAL}\n    if context_total == 0:\n        return 0.0",
            {"q3 - 2"},
            "A context that never starts a bigram gets the uniform\n$1/V$",
        ),
        "setdefault adds the pair to counts": Mutant(
            "counts.get((context, token), 0)",
            "counts.setdefault((context, token), 0)",
            {"q3 - 2"},
            "Do not change `counts`",
        ),
    },
    "q4": {
        "ties broken by dict order": Mutant(
            "    return min(candidates)[1]",
            "    return min(candidates, key=lambda ct: ct[0])[1]",
            {"q4 - 2"},
            "so that the answer does not depend on the order of the dict",
        ),
        "ties go to the alphabetically last token": Mutant(
            GREEDY,
            "    candidates = [(c, t) for (prev, t), c in counts.items() if prev == context]\n"
            "    if not candidates:\n"
            "        return None\n"
            "    return max(candidates)[1]\n",
            {"q4 - 2"},
            "Break ties by taking the alphabetically first\ntoken",
        ),
        "the least frequent token": Mutant(
            "[(-c, token) for",
            "[(c, token) for",
            {"q4 - 2"},
            "the token $t$ with the largest count $c(a, t)$",
        ),
        "returns the (count, token) pair": Mutant(
            "    return min(candidates)[1]",
            "    return min(candidates)",
            {"q4 - 1", "q4 - 2"},
            "the token $t$ with the largest count",
        ),
        "no None for an unseen context (min of an empty list raises)": Mutant(
            "    if not candidates:\n        return None\n",
            "",
            {"q4 - 2"},
            "Return `None` if\n`context` never starts a bigram",
        ),
        'returns "" for an unseen context': Mutant(
            "        return None",
            '        return ""',
            {"q4 - 2"},
            "Return `None` if\n`context` never starts a bigram",
        ),
        "ignores the context: the most frequent next token overall": Mutant(
            "counts.items() if prev == context]",
            "counts.items()]",
            {"q4 - 2"},
            "after the\ncontext $a$",
        ),
    },
}

CORRECT: dict[str, dict[str, Correct]] = {
    "q1": {
        "collections.Counter over zip": Correct(
            COUNTS,
            "    from collections import Counter\n\n    return Counter(zip(tokens, tokens[1:]))\n",
        ),
        "an index loop": Correct(
            COUNTS,
            "    counts = {}\n"
            "    for i in range(len(tokens) - 1):\n"
            "        key = (tokens[i], tokens[i + 1])\n"
            "        if key in counts:\n"
            "            counts[key] += 1\n"
            "        else:\n"
            "            counts[key] = 1\n"
            "    return counts\n",
        ),
    },
    "q2": {
        "statistics.fmean, whose StatisticsError is a ValueError": Correct(
            f"    if not log_probs:\n{EMPTY}\n{PPL}",
            "    import statistics\n\n    return math.exp(-statistics.fmean(log_probs))",
        ),
        "numpy's mean": Correct(
            PPL,
            "    import numpy as np\n\n    return float(np.exp(-np.mean(log_probs)))",
        ),
    },
    "q3": {
        "totals per context in a Counter": Correct(
            f"{TOTAL}\n    return (counts.get((context, token), 0) + k) / {ADD_K}",
            "    from collections import Counter\n\n"
            "    totals = Counter()\n"
            "    for (prev, _), c in counts.items():\n"
            "        totals[prev] += c\n"
            "    seen = counts.get((context, token), 0)\n"
            "    return (seen + k) / (totals[context] + k * vocab_size)",
        ),
        "exact arithmetic with fractions.Fraction": Correct(
            f"{TOTAL}\n    return (counts.get((context, token), 0) + k) / {ADD_K}",
            "    from fractions import Fraction\n\n"
            "    seen = sum(c for (a, _), c in counts.items() if a == context)\n"
            "    num = Fraction(counts.get((context, token), 0)) + Fraction(k)\n"
            "    return float(num / (seen + Fraction(k) * vocab_size))",
        ),
    },
    "q4": {
        "sorted by (-count, token)": Correct(
            GREEDY,
            "    after = [t for (a, t) in counts if a == context]\n"
            "    after.sort(key=lambda t: (-counts[context, t], t))\n"
            "    return after[0] if after else None\n",
        ),
        "the largest count, then the smallest token that has it": Correct(
            GREEDY,
            "    after = {t: c for (a, t), c in counts.items() if a == context}\n"
            "    if not after:\n"
            "        return None\n"
            "    best = max(after.values())\n"
            "    return min(t for t, c in after.items() if c == best)\n",
        ),
    },
}
