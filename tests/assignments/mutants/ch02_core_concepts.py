"""Mutation table of ch02_core_concepts: pairs, a merge, BPE, cosine, next-token pairs, SGNS loss,
span corruption.

The format is in ``mutants/__init__.py``.
"""

from mutants import Correct, Mutant

COUNT = """\
    counts: dict[tuple[int, int], int] = {}
    # ids[1:] is one shorter, so the last id starts no pair (no wrap-around)
    for pair in zip(ids, ids[1:], strict=False):
        counts[pair] = counts.get(pair, 0) + 1
    return counts
"""
PAIRS = "zip(ids, ids[1:], strict=False)"
MERGE = """\
    out: list[int] = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2  # both ids are used up: occurrences cannot overlap
        else:
            out.append(ids[i])
            i += 1
    return out
"""
MATCH = "        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:"
BPE = """\
    ids = list(text.encode("utf-8"))
    merges: list[tuple[tuple[int, int], int]] = []
    for i in range(num_merges):
        counts = count_pairs(ids)
        if not counts:  # fewer than two ids left
            break
        # max returns the first of equal maxima; the keys are in order of first occurrence
        pair = max(counts, key=counts.get)
        new_id = 256 + i
        ids = merge(ids, pair, new_id)
        merges.append((pair, new_id))
    return merges
"""
BEST = "        pair = max(counts, key=counts.get)"
COSINE = "    return float(np.dot(a, b) / (norm_a * norm_b))"
ZERO = """\
    if norm_a == 0 or norm_b == 0:
        raise ValueError("the cosine similarity of a zero vector is undefined")
"""
SHIFT = "    return ids[:-1], ids[1:]"
SHORT = """\
    if len(ids) < 2:
        raise ValueError("need at least two tokens to form an (input, target) pair")
"""
SHAPE = "    if a.ndim != 1 or a.shape != b.shape:"
AS_FLOAT = "    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)"
CHECK_TO_RETURN = (
    (
        '        raise ValueError(f"need two 1-D vectors of the same length, got {a.shape} and '
        '{b.shape}")\n'
    )
    + f"""\
    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)
{ZERO}{COSINE}"""
)
SGNS = "    return float(np.logaddexp(0, -true_score) + np.logaddexp(0, noise_scores).sum())"
NOISE = "    noise_scores = u_noise @ v_c  # (k,): u_n . v_c for each noise word"
RUN = "            if i == 0 or not mask[i - 1]:  # a new run starts here"
FINAL = "    targets.append(sentinels[span])  # the final sentinel marks the end"
LENGTH = """\
    if len(mask) != len(tokens):
        raise ValueError(f"mask has {len(mask)} entries for {len(tokens)} tokens")
"""

MUTANTS: dict[str, dict[str, Mutant]] = {
    "q1": {
        "pairs wrap around": Mutant(
            PAIRS,
            "zip(ids, ids[1:] + ids[:1], strict=False)",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
            "The sequence does not wrap around",
        ),
        "pairs that do not overlap": Mutant(
            PAIRS,
            "zip(ids[::2], ids[1::2], strict=False)",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
            "Pairs overlap",
        ),
        "pairs reversed: (right, left)": Mutant(
            PAIRS,
            "zip(ids[1:], ids, strict=False)",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
            "each pair\n`(left, right)` of neighbouring ids",
        ),
        "each pair counted once": Mutant(
            "        counts[pair] = counts.get(pair, 0) + 1",
            "        counts[pair] = 1",
            {"q1 - 1", "q1 - 2"},
            "the number of times it occurs",
        ),
        "keys sorted": Mutant(
            "    return counts\n",
            "    return dict(sorted(counts.items()))\n",
            {"q1 - 3"},
            "adding each new pair when you first meet it",
        ),
        "keys by count, most frequent first": Mutant(
            "    return counts\n",
            "    from collections import Counter\n\n"
            "    return dict(Counter(counts).most_common())\n",
            {"q1 - 3"},
            "adding each new pair when you first meet it",
        ),
        "scans from right to left": Mutant(
            PAIRS,
            "reversed(list(zip(ids, ids[1:], strict=False)))",
            {"q1 - 3"},
            "Build the dict by scanning from left to right",
        ),
        "pops ids off the caller's list": Mutant(
            COUNT,
            "    counts = {}\n"
            "    while len(ids) > 1:\n"
            "        pair = (ids.pop(0), ids[0])\n"
            "        counts[pair] = counts.get(pair, 0) + 1\n"
            "    return counts\n",
            {"q1 - 3"},
            "Do not change `ids`",
        ),
        "reads the first id before the loop: fails on []": Mutant(
            COUNT,
            "    counts = {}\n"
            "    prev = ids[0]\n"
            "    for x in ids[1:]:\n"
            "        counts[prev, x] = counts.get((prev, x), 0) + 1\n"
            "        prev = x\n"
            "    return counts\n",
            {"q1 - 2"},
            "fewer than two ids give `{}`",
        ),
    },
    "q2": {
        "only the first occurrence replaced": Mutant(
            "            out.append(new_id)\n            i += 2",
            "            return out + [new_id] + ids[i + 2 :]",
            {"q2 - 2", "q2 - 3"},
            "replacing every\noccurrence of the pair by that id",
        ),
        "scans from right to left": Mutant(
            MERGE,
            "    out = []\n"
            "    i = len(ids) - 1\n"
            "    while i >= 0:\n"
            "        if i >= 1 and (ids[i - 1], ids[i]) == pair:\n"
            "            out.append(new_id)\n"
            "            i -= 2\n"
            "        else:\n"
            "            out.append(ids[i])\n"
            "            i -= 1\n"
            "    return out[::-1]\n",
            {"q2 - 2"},
            "the left-to-right scan decides",
        ),
        "moves one place after a match (occurrences overlap)": Mutant(
            "            i += 2  # both ids are used up: occurrences cannot overlap",
            "            i += 1",
            {"q2 - 1", "q2 - 2", "q2 - 3"},
            "emit `new_id` and\njump two places",
        ),
        "merges in place and returns ids": Mutant(
            MERGE,
            "    i = 0\n"
            "    while i < len(ids) - 1:\n"
            "        if (ids[i], ids[i + 1]) == pair:\n"
            "            ids[i : i + 2] = [new_id]\n"
            "        i += 1\n"
            "    return ids\n",
            {"q2 - 3"},
            "returns a new list\nand leaves `ids` unchanged",
        ),
        "returns ids itself when the pair does not occur": Mutant(
            "    out: list[int] = []\n",
            "    if pair not in zip(ids, ids[1:]):\n        return ids\n    out = []\n",
            {"q2 - 3"},
            "returns a new list",
        ),
        "wraps around: the last id pairs with the first": Mutant(
            MATCH,
            "        if (ids[i], ids[(i + 1) % len(ids)]) == pair:",
            {"q2 - 2", "q2 - 3"},
            "When `ids[i]` and `ids[i + 1]` form the pair",
        ),
        "the order within the pair ignored": Mutant(
            MATCH,
            "        if i + 1 < len(ids) and {ids[i], ids[i + 1]} == set(pair):",
            {"q2 - 3"},
            "When `ids[i]` and `ids[i + 1]` form the pair",
        ),
        "the last id dropped": Mutant(
            "    while i < len(ids):",
            "    while i < len(ids) - 1:",
            {"q2 - 1", "q2 - 2", "q2 - 3"},
            "otherwise emit `ids[i]` and move one place",
        ),
        "string replace on the joined ids (12, 3 holds the pair (2, 3))": Mutant(
            MERGE,
            '    text = " ".join(map(str, ids)).replace(f"{pair[0]} {pair[1]}", str(new_id))\n'
            "    return [int(x) for x in text.split()]\n",
            {"q2 - 3"},
            "When `ids[i]` and `ids[i + 1]` form the pair",
        ),
        "a skip flag and ids[-1] at the end: fails on []": Mutant(
            MERGE,
            "    out, skip = [], False\n"
            "    for i in range(len(ids) - 1):\n"
            "        if skip:\n"
            "            skip = False\n"
            "        elif (ids[i], ids[i + 1]) == pair:\n"
            "            out.append(new_id)\n"
            "            skip = True\n"
            "        else:\n"
            "            out.append(ids[i])\n"
            "    if not skip:\n"
            "        out.append(ids[-1])\n"
            "    return out\n",
            {"q2 - 3"},
            "otherwise emit `ids[i]` and move one place",
        ),
    },
    "q3": {
        "Unicode code points instead of UTF-8 bytes": Mutant(
            '    ids = list(text.encode("utf-8"))\n    merges',
            "    ids = [ord(ch) for ch in text]\n    merges",
            {"q3 - 3"},
            "works on the UTF-8 bytes of the\ntext",
        ),
        "ties go to the most recent pair": Mutant(
            BEST,
            "        pair = max(reversed(counts), key=counts.get)",
            {"q3 - 2", "q3 - 4"},
            "ties go to the pair that occurs first in the current\n   sequence",
        ),
        "ties go to the smallest pair": Mutant(
            BEST,
            "        pair = max(sorted(counts), key=counts.get)",
            {"q3 - 2", "q3 - 4"},
            "ties go to the pair that occurs first in the current\n   sequence",
        ),
        "pairs counted once, before the first merge": Mutant(
            BPE,
            '    ids = list(text.encode("utf-8"))\n'
            "    merges = []\n"
            "    counts = count_pairs(ids)\n"
            "    for i in range(num_merges):\n"
            "        if not counts:\n"
            "            break\n"
            "        pair = max(counts, key=counts.get)\n"
            "        del counts[pair]\n"
            "        ids = merge(ids, pair, 256 + i)\n"
            "        merges.append((pair, 256 + i))\n"
            "    return merges\n",
            {"q3 - 1", "q3 - 2", "q3 - 3", "q3 - 4"},
            "count the pairs of the current sequence",
        ),
        "the merged sequence thrown away": Mutant(
            "        ids = merge(ids, pair, new_id)\n        merges",
            "        merge(ids, pair, new_id)\n        merges",
            {"q3 - 1", "q3 - 2", "q3 - 3", "q3 - 4"},
            "replace it with the new id $256 + i$ using `merge`",
        ),
        "one merge too few": Mutant(
            "    for i in range(num_merges):",
            "    for i in range(num_merges - 1):",
            {"q3 - 2", "q3 - 3", "q3 - 4"},
            "for\nmerge number $i = 0, 1, \\dots$",
        ),
        "new ids from 255": Mutant(
            "        new_id = 256 + i",
            "        new_id = 255 + i",
            {"q3 - 1", "q3 - 2", "q3 - 3", "q3 - 4"},
            "the new id $256 + i$",
        ),
        "stops when the best pair occurs only once": Mutant(
            BEST,
            f"{BEST}\n        if counts[pair] < 2:\n            break",
            {"q3 - 1", "q3 - 2", "q3 - 3", "q3 - 4"},
            "Keep merging even if the best pair occurs only\nonce",
        ),
        "records the pairs without their ids": Mutant(
            "        merges.append((pair, new_id))",
            "        merges.append(pair)",
            {"q3 - 1", "q3 - 2", "q3 - 3", "q3 - 4"},
            "record `(pair, 256 + i)`",
        ),
        "does not stop when fewer than two ids are left": Mutant(
            "        if not counts:  # fewer than two ids left\n            break\n",
            "",
            {"q3 - 1", "q3 - 4"},
            "stop early when the sequence has fewer than two ids left",
        ),
    },
    "q4": {
        "the dot product, not normalised": Mutant(
            "np.dot(a, b) / (norm_a * norm_b)",
            "np.dot(a, b)",
            {"q4 - 1", "q4 - 2", "q4 - 3"},
            "ignores length",
        ),
        "divided by one norm only (right for the public example)": Mutant(
            "np.dot(a, b) / (norm_a * norm_b)",
            "np.dot(a, b) / norm_b",
            {"q4 - 2", "q4 - 3"},
            "scaling either vector by a positive number leaves it unchanged",
        ),
        "squared norms (no square roots)": Mutant(
            "np.dot(a, b) / (norm_a * norm_b)",
            "np.dot(a, b) / (norm_a**2 * norm_b**2)",
            {"q4 - 1", "q4 - 2", "q4 - 3"},
            "\\sqrt{\\sum_i a_i^2}\\,\\sqrt{\\sum_i b_i^2}",
        ),
        "absolute value: opposite vectors give 1": Mutant(
            "np.dot(a, b) / (norm_a * norm_b)",
            "abs(np.dot(a, b)) / (norm_a * norm_b)",
            {"q4 - 2", "q4 - 3"},
            "It ranges from $-1$ (opposite directions)",
        ),
        "normalises a and b in place": Mutant(
            COSINE,
            "    a /= norm_a\n    b /= norm_b\n    return float(np.dot(a, b))",
            {"q4 - 2"},
            "Do not\nchange `a` or `b`",
        ),
        "a 1-element array (norms with keepdims)": Mutant(
            f"    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)\n{ZERO}{COSINE}",
            "    norm_a = np.linalg.norm(a, keepdims=True)\n"
            "    norm_b = np.linalg.norm(b, keepdims=True)\n"
            f"{ZERO}"
            "    return np.dot(a, b) / (norm_a * norm_b)",
            {"q4 - 1", "q4 - 2", "q4 - 3"},
            "return a float",
        ),
        "no check for a zero vector (nan)": Mutant(
            ZERO, "", {"q4 - 4"}, "raise `ValueError` if either vector is all zeros"
        ),
        "only the lengths compared (2-D arrays pass)": Mutant(
            SHAPE,
            "    if len(a) != len(b):",
            {"q4 - 5"},
            "the two arrays do not have the same 1-D shape",
        ),
        "shapes compared, not dimensions (np.dot of two matrices is a matrix)": Mutant(
            f"{SHAPE}\n",
            "    if a.shape != b.shape:\n",
            {"q4 - 5"},
            "arrays that are not 1-D",
        ),
        "shapes compared, not dimensions; a sum of products gives matrices a number": Mutant(
            f"{SHAPE}\n{CHECK_TO_RETURN}",
            "    if a.shape != b.shape:\n"
            f"{CHECK_TO_RETURN.replace('np.dot(a, b)', '(a * b).sum()')}",
            {"q4 - 5"},
            "a\nmatrix is not a vector, even when a formula would still give a number",
        ),
        "arrays flattened with ravel: a matrix becomes a vector": Mutant(
            AS_FLOAT,
            "    a = np.asarray(a, dtype=float).ravel()\n"
            "    b = np.asarray(b, dtype=float).ravel()",
            {"q4 - 5"},
            "arrays that are not 1-D",
        ),
        "arrays squeezed: a (1, d) row passes as a vector": Mutant(
            AS_FLOAT,
            "    a = np.squeeze(np.asarray(a, dtype=float))\n"
            "    b = np.squeeze(np.asarray(b, dtype=float))",
            {"q4 - 5"},
            "a row `(1, d)`\nagainst a vector `(d,)`",
        ),
        "assert instead of ValueError for a zero vector": Mutant(
            ZERO,
            '    assert norm_a > 0 and norm_b > 0, "zero vector"\n',
            {"q4 - 4"},
            "raise `ValueError` if either vector is all zeros",
        ),
    },
    "q5": {
        "inputs and targets swapped": Mutant(
            SHIFT,
            "    return ids[1:], ids[:-1]",
            {"q5 - 1", "q5 - 2"},
            "the inputs are every token\nbut the last, the targets every token but the first",
        ),
        "no error for fewer than two tokens": Mutant(SHORT, "", {"q5 - 2"}, "raise `ValueError`"),
        "only an empty list rejected": Mutant(
            "    if len(ids) < 2:",
            "    if not ids:",
            {"q5 - 2"},
            "With\nfewer than two tokens there is nothing to predict",
        ),
        "assert instead of ValueError": Mutant(
            SHORT,
            '    assert len(ids) >= 2, "need two tokens"\n',
            {"q5 - 2"},
            "raise `ValueError`",
        ),
        "one token too few on each side": Mutant(
            SHIFT,
            "    return ids[:-2], ids[1:-1]",
            {"q5 - 1", "q5 - 2"},
            "A sequence of $N$ tokens gives $N - 1$ training examples",
        ),
        "targets made by popping the caller's list": Mutant(
            SHIFT,
            "    inputs = ids[:-1]\n    ids.pop(0)\n    return inputs, ids",
            {"q5 - 2"},
            "Do not change `ids`",
        ),
        "a list [inputs, targets] instead of a tuple": Mutant(
            SHIFT,
            "    return [ids[:-1], ids[1:]]",
            {"q5 - 1", "q5 - 2"},
            "returning the tuple `(inputs, targets)`",
        ),
        "numpy arrays instead of lists": Mutant(
            SHIFT,
            "    return np.array(ids[:-1]), np.array(ids[1:])",
            {"q5 - 1", "q5 - 2"},
            "of two lists",
        ),
    },
    "q6": {
        "no minus sign inside the noise words' sigma": Mutant(
            "np.logaddexp(0, noise_scores)",
            "np.logaddexp(0, -noise_scores)",
            {"q6 - 2", "q6 - 3", "q6 - 4"},
            "Note the minus sign *inside* the second $\\sigma$",
        ),
        "noise terms averaged, not summed": Mutant(
            "np.logaddexp(0, noise_scores).sum()",
            "np.logaddexp(0, noise_scores).mean()",
            {"q6 - 1", "q6 - 2", "q6 - 3", "q6 - 4"},
            "the noise terms are summed, not\naveraged",
        ),
        "log of the sigmoid computed directly (overflows)": Mutant(
            SGNS,
            "    sig = lambda x: 1 / (1 + np.exp(-x))\n"
            "    return float(-np.log(sig(true_score)) - np.log(sig(-noise_scores)).sum())",
            {"q6 - 4"},
            "compute the loss **stably**",
        ),
        "the popular softmax: -log P(o | c) over the true and the noise words": Mutant(
            SGNS,
            "    scores = np.concatenate([[true_score], noise_scores])\n"
            "    return float(np.logaddexp.reduce(scores) - true_score)",
            {"q6 - 1", "q6 - 2", "q6 - 3", "q6 - 4"},
            "That costs one dot product per word of the vocabulary, and it is\nnot what "
            "word2vec trains",
        ),
        "the objective, not the loss (sign flipped)": Mutant(
            SGNS,
            SGNS.replace("return float(", "return -float("),
            {"q6 - 1", "q6 - 2", "q6 - 3", "q6 - 4"},
            "The loss for one pair is",
        ),
        "only the first noise word": Mutant(
            "np.logaddexp(0, noise_scores).sum()",
            "np.logaddexp(0, noise_scores[0])",
            {"q6 - 1", "q6 - 2", "q6 - 3", "q6 - 4"},
            "each of $k$ *noise* words",
        ),
        "noise words scored against the context word u_o": Mutant(
            NOISE,
            "    noise_scores = u_noise @ u_o",
            {"q6 - 1", "q6 - 2", "q6 - 3", "q6 - 4"},
            "\\sigma(-u_{n_i} \\cdot v_c)",
        ),
        "the noise words' scores clipped to the example's range (-50, 50)": Mutant(
            NOISE,
            "    noise_scores = np.clip(u_noise @ v_c, -50, 50)",
            {"q6 - 4"},
            "scores of\n$\\pm 1000$",
        ),
    },
    "q7": {
        "one sentinel per masked token, not per run": Mutant(
            RUN,
            "            if True:",
            {"q7 - 1", "q7 - 2", "q7 - 3"},
            "each *run* of consecutive masked tokens replaced by *one*\n  sentinel",
        ),
        "no final sentinel": Mutant(
            FINAL,
            "    pass",
            {"q7 - 1", "q7 - 2", "q7 - 3"},
            "then\n  one final sentinel",
        ),
        "the final sentinel repeats the last run's": Mutant(
            FINAL,
            "    targets.append(sentinels[max(span - 1, 0)])",
            {"q7 - 1", "q7 - 2", "q7 - 3"},
            "the next one in the list",
        ),
        "mask[i - 1] at i = 0 wraps around to the last token": Mutant(
            RUN,
            "            if not mask[i - 1]:",
            {"q7 - 2"},
            "a mask that starts and ends with\n`True`",
        ),
        "the masked tokens kept in the inputs too": Mutant(
            "            targets.append(token)\n",
            "            targets.append(token)\n            inputs.append(token)\n",
            {"q7 - 1", "q7 - 2", "q7 - 3"},
            "with each *run* of consecutive masked tokens replaced",
        ),
        "no length check (zip stops at the shorter)": Mutant(
            LENGTH, "", {"q7 - 4"}, "raises `ValueError`"
        ),
        "the same sentinel for every run": Mutant(
            "                span += 1\n",
            "",
            {"q7 - 1", "q7 - 2", "q7 - 3"},
            "the first run by `sentinels[0]`, the second by `sentinels[1]`",
        ),
        "the tokens list itself returned when nothing is masked": Mutant(
            LENGTH,
            f"{LENGTH}    if not any(mask):\n        return tokens, [sentinels[0]]\n",
            {"q7 - 3"},
            "Do not change the\narguments",
        ),
        "the hidden tokens before their sentinel in the targets": Mutant(
            "                targets.append(sentinels[span])\n",
            "",
            {"q7 - 1", "q7 - 2", "q7 - 3"},
            "its sentinel followed by the tokens it hides",
        ),
    },
}

CORRECT: dict[str, dict[str, Correct]] = {
    "q1": {
        "collections.Counter over zip (keeps first-occurrence order)": Correct(
            COUNT,
            "    from collections import Counter\n\n    return Counter(zip(ids, ids[1:]))\n",
        ),
        "an index loop": Correct(
            COUNT,
            "    counts = {}\n"
            "    for i in range(len(ids) - 1):\n"
            "        key = (ids[i], ids[i + 1])\n"
            "        counts[key] = counts[key] + 1 if key in counts else 1\n"
            "    return counts\n",
        ),
    },
    "q2": {
        "recursion on the rest of the list": Correct(
            MERGE,
            "    if len(ids) < 2:\n"
            "        return list(ids)\n"
            "    if (ids[0], ids[1]) == pair:\n"
            "        return [new_id] + merge(ids[2:], pair, new_id)\n"
            "    return [ids[0]] + merge(ids[1:], pair, new_id)\n",
        ),
        "a skip flag, done right": Correct(
            MERGE,
            "    out, skip = [], False\n"
            "    for i, x in enumerate(ids):\n"
            "        if skip:\n"
            "            skip = False\n"
            "        elif i + 1 < len(ids) and (x, ids[i + 1]) == pair:\n"
            "            out.append(new_id)\n"
            "            skip = True\n"
            "        else:\n"
            "            out.append(x)\n"
            "    return out\n",
        ),
    },
    "q3": {
        "its own counting: count, then first position, in one key": Correct(
            BPE,
            '    ids = list(text.encode("utf-8"))\n'
            "    merges = []\n"
            "    for i in range(num_merges):\n"
            "        pairs = list(zip(ids, ids[1:]))\n"
            "        if not pairs:\n"
            "            break\n"
            "        best = max(pairs, key=lambda p: (pairs.count(p), -pairs.index(p)))\n"
            "        out, j = [], 0\n"
            "        while j < len(ids):\n"
            "            if tuple(ids[j : j + 2]) == best:\n"
            "                out.append(256 + i)\n"
            "                j += 2\n"
            "            else:\n"
            "                out.append(ids[j])\n"
            "                j += 1\n"
            "        ids = out\n"
            "        merges.append((best, 256 + i))\n"
            "    return merges\n",
        ),
    },
    "q4": {
        "pure Python with math.fsum and math.sqrt": Correct(
            f"    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)\n{ZERO}{COSINE}",
            "    import math\n\n"
            "    norm_a = math.sqrt(math.fsum(x * x for x in a.tolist()))\n"
            "    norm_b = math.sqrt(math.fsum(y * y for y in b.tolist()))\n"
            f"{ZERO}"
            "    dot = math.fsum(x * y for x, y in zip(a.tolist(), b.tolist()))\n"
            "    return dot / (norm_a * norm_b)",
        ),
        "1 - scipy.spatial.distance.cosine": Correct(
            COSINE,
            "    from scipy.spatial.distance import cosine\n\n"
            "    return 1.0 - float(cosine(a, b))",
        ),
    },
    "q5": {
        "two list comprehensions": Correct(
            SHIFT,
            "    n = len(ids)\n"
            "    return [ids[t] for t in range(n - 1)], [ids[t + 1] for t in range(n - 1)]",
        ),
        "unzipped neighbour pairs": Correct(
            SHIFT,
            "    inputs, targets = zip(*zip(ids, ids[1:]))\n"
            "    return list(inputs), list(targets)",
        ),
    },
    "q6": {
        "scipy.special.log_expit": Correct(
            SGNS,
            "    from scipy.special import log_expit\n\n"
            "    return float(-log_expit(true_score) - log_expit(-noise_scores).sum())",
        ),
        "softplus by cases, with math.log1p": Correct(
            SGNS,
            "    import math\n\n"
            "    def softplus(x):\n"
            "        x = float(x)\n"
            "        return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))\n\n"
            "    return softplus(-true_score) + sum(softplus(s) for s in noise_scores)",
        ),
    },
    "q7": {
        "itertools.groupby over the runs": Correct(
            """\
    inputs, targets = [], []
    span = 0  # the sentinel of the next run
""",
            """\
    from itertools import groupby

    inputs, targets, span = [], [], 0
    for hidden, run in groupby(zip(tokens, mask), key=lambda pair: bool(pair[1])):
        words = [t for t, _ in run]
        if hidden:
            inputs.append(sentinels[span])
            targets += [sentinels[span], *words]
            span += 1
        else:
            inputs += words
    return inputs, targets + [sentinels[span]]
""",
        ),
    },
}
