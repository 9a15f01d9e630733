"""Mutation table of ch06_applications: F1, ROUGE-L, BLEU, pass@k, recall@k and BM25.

The format is in ``mutants/__init__.py``.
"""

from mutants import Correct, Mutant

MATRIX = """\
    m = np.zeros((n_classes, n_classes), dtype=int)
    for g, p in zip(gold, pred):
        m[g, p] += 1
    return m
"""
PRF = """\
    tp = sum(g == positive and p == positive for g, p in zip(gold, pred))
    fp = sum(g != positive and p == positive for g, p in zip(gold, pred))
    fn = sum(g == positive and p != positive for g, p in zip(gold, pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
"""
F1 = "    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0"
LCS = """\
    L = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                L[i][j] = L[i - 1][j - 1] + 1
            else:
                L[i][j] = max(L[i - 1][j], L[i][j - 1])
    return L[len(a)][len(b)]
"""
ROUGE_F = "    return 2 * precision * recall / (precision + recall)\n"
CLIPPED = "    return sum(min(count, ref[gram]) for gram, count in hyp.items()) / total"
BP = "    return math.exp(1 - ref_len / hyp_len)"
PRECISIONS = (
    "    precisions = [clipped_precision(hypothesis, reference, n) for n in range(1, max_n + 1)]"
)
BLEU = "    return 100 * brevity_penalty(len(hypothesis), len(reference)) * math.exp(mean_log)"
CHECK = """\
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
"""
PRODUCT = """\
    if n - c < k:
        return 1.0
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1 - k / i
    return 1.0 - fail
"""
RECALL = "    return len(set(ranked[:k]) & set(relevant)) / len(relevant)"
IDF = "    idf = math.log(1 + (n_docs - doc_freq + 0.5) / (doc_freq + 0.5))"
TERM = "    return idf * tf * (k1 + 1) / (tf + k1 * length_norm)"
NGRAMS = """\
    hyp = Counter(tuple(hypothesis[i : i + n]) for i in range(len(hypothesis) - n + 1))
    ref = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
"""
EMPTY = """\
    if not relevant:
        raise ValueError("recall@k is undefined without relevant passages")
"""
NORM = "    length_norm = 1 - b + b * doc_len / avg_doc_len"

MUTANTS: dict[str, dict[str, Mutant]] = {
    "q1": {
        "F1 as the arithmetic mean of precision and recall": Mutant(
            F1,
            "    f1 = (precision + recall) / 2",
            {"q1 - 2", "q1 - 3"},
            "$F_1$ is their *harmonic* mean",
        ),
        "precision 0 / 0 raises ZeroDivisionError": Mutant(
            "    precision = tp / (tp + fp) if tp + fp else 0.0",
            "    precision = tp / (tp + fp)",
            {"q1 - 3"},
            "$P = 0$ when nothing is predicted positive",
        ),
        "recall 0 / 0 raises ZeroDivisionError": Mutant(
            "    recall = tp / (tp + fn) if tp + fn else 0.0",
            "    recall = tp / (tp + fn)",
            {"q1 - 3"},
            "$R = 0$ when no example is positive",
        ),
        "F1 0 / 0 raises ZeroDivisionError": Mutant(
            F1,
            "    f1 = 2 * precision * recall / (precision + recall)",
            {"q1 - 3"},
            "$F_1 = 0$ when $P + R = 0$",
        ),
        "0 instead of 0.0 (an int)": Mutant(
            "    precision = tp / (tp + fp) if tp + fp else 0.0",
            "    precision = tp / (tp + fp) if tp + fp else 0",
            {"q1 - 3"},
            "is **0.0**",
        ),
        "confusion matrix transposed (rows: predictions)": Mutant(
            "        m[g, p] += 1",
            "        m[p, g] += 1",
            {"q1 - 1", "q1 - 3"},
            "rows are the truth",
        ),
        "size from the labels seen (n_classes ignored)": Mutant(
            "    m = np.zeros((n_classes, n_classes), dtype=int)",
            "    n = max(max(gold), max(pred)) + 1\n    m = np.zeros((n, n), dtype=int)",
            {"q1 - 3"},
            "a class that never occurs\nstill gets its row and column of zeros",
        ),
        "a float matrix (np.zeros' default)": Mutant(
            "    m = np.zeros((n_classes, n_classes), dtype=int)",
            "    m = np.zeros((n_classes, n_classes))",
            {"q1 - 3"},
            "returns a NumPy integer\narray",
        ),
        "class 1 always positive (positive ignored)": Mutant(
            PRF,
            PRF.replace("== positive", "== 1").replace("!= positive", "!= 1"),
            {"q1 - 3"},
            "of class `positive`",
        ),
        "false positives only from gold class 0 (binary thinking)": Mutant(
            "    fp = sum(g != positive and p == positive for g, p in zip(gold, pred))",
            "    fp = sum(g == 1 - positive and p == positive for g, p in zip(gold, pred))",
            {"q1 - 3"},
            "the false positives FP (gold another class, predicted positive)",
        ),
        "precision and recall swapped": Mutant(
            "    return precision, recall, f1",
            "    return recall, precision, f1",
            {"q1 - 2", "q1 - 3"},
            "Precision $P$: of the examples we called positive, the share that are",
        ),
        "a list [p, r, f1] instead of a tuple": Mutant(
            "    return precision, recall, f1",
            "    return [precision, recall, f1]",
            {"q1 - 3"},
            "which returns the tuple\n`(precision, recall, f1)`",
        ),
    },
    "q2": {
        "longest common substring": Mutant(
            "                L[i][j] = max(L[i - 1][j], L[i][j - 1])\n"
            "    return L[len(a)][len(b)]",
            "                L[i][j] = 0\n    return max(max(row) for row in L)",
            {"q2 - 1", "q2 - 2", "q2 - 3"},
            "A subsequence is not a substring",
        ),
        "counts shared tokens, ignoring order": Mutant(
            "    lcs = lcs_length(candidate, reference)",
            "    lcs = sum((Counter(candidate) & Counter(reference)).values())",
            {"q2 - 3"},
            "that occur in both *in the same order*",
        ),
        "F as the arithmetic mean of P and R": Mutant(
            ROUGE_F,
            "    return (precision + recall) / 2\n",
            {"q2 - 2", "q2 - 3"},
            "F = \\frac{2PR}{P + R}",
        ),
        "recall only": Mutant(
            ROUGE_F, "    return recall\n", {"q2 - 2", "q2 - 3"}, "F = \\frac{2PR}{P + R}"
        ),
        "no 0.0 for an LCS of 0 (0 / 0)": Mutant(
            "    if lcs == 0:\n        return 0.0\n",
            "",
            {"q2 - 3"},
            "Return 0.0 when the\nLCS is 0",
        ),
        "0 instead of 0.0 (an int)": Mutant(
            "    if lcs == 0:\n        return 0.0\n",
            "    if lcs == 0:\n        return 0\n",
            {"q2 - 3"},
            "`rouge_l_f1` returns a float",
        ),
        "plain recursion instead of a table": Mutant(
            LCS,
            "    if not a or not b:\n"
            "        return 0\n"
            "    if a[-1] == b[-1]:\n"
            "        return lcs_length(a[:-1], b[:-1]) + 1\n"
            "    return max(lcs_length(a[:-1], b), lcs_length(a, b[:-1]))\n",
            {"q2 - 3"},
            "fill the table with\nloops",
        ),
        "a match extends the best neighbour, not the diagonal": Mutant(
            "                L[i][j] = L[i - 1][j - 1] + 1",
            "                L[i][j] = max(L[i - 1][j], L[i][j - 1]) + 1",
            {"q2 - 1", "q2 - 3"},
            "`L[i][j] = L[i - 1][j - 1] + 1`",
        ),
        "the table one row short": Mutant(
            "    for i in range(1, len(a) + 1):",
            "    for i in range(1, len(a)):",
            {"q2 - 1", "q2 - 2", "q2 - 3"},
            "The answer is `L[m][n]`",
        ),
        "greedy matching from the left": Mutant(
            LCS,
            "    j = n = 0\n"
            "    for x in a:\n"
            "        if x in b[j:]:\n"
            "            j += b[j:].index(x) + 1\n"
            "            n += 1\n"
            "    return n\n",
            {"q2 - 1", "q2 - 3"},
            "the longest list of tokens that occur in both *in the same order*",
        ),
    },
    "q3": {
        "no clipping": Mutant(
            "min(count, ref[gram])",
            "count * (gram in ref)",
            {"q3 - 1", "q3 - 4"},
            "its count is *clipped* to the\nreference count",
        ),
        "no brevity penalty": Mutant(
            BLEU,
            "    return 100 * math.exp(mean_log)",
            {"q3 - 3", "q3 - 4"},
            "So BLEU multiplies by\n$\\mathrm{BP} = e^{1 - r/c}$",
        ),
        "brevity penalty also for long hypotheses": Mutant(
            "    if hyp_len >= ref_len:\n        return 1.0\n",
            "",
            {"q3 - 2", "q3 - 4"},
            "by 1 when $c \\ge r$",
        ),
        "takes log 0": Mutant(
            "    if min(precisions) == 0:",
            "    if not precisions:",
            {"q3 - 4"},
            "If any $p_n$ is 0, return 0.0",
        ),
        "divided by the number of distinct n-grams": Mutant(
            "    total = sum(hyp.values())",
            "    total = len(hyp)",
            {"q3 - 1", "q3 - 3", "q3 - 4"},
            "divided by the number of n-grams in\nthe hypothesis, `len(hypothesis) - n + 1`",
        ),
        "brevity penalty exp(1 - c / r)": Mutant(
            BP,
            "    return math.exp(1 - hyp_len / ref_len)",
            {"q3 - 2", "q3 - 3", "q3 - 4"},
            "$\\mathrm{BP} = e^{1 - r/c}$",
        ),
        "max_n ignored: always 4 orders": Mutant(
            PRECISIONS,
            "    precisions = [clipped_precision(hypothesis, reference, n) for n in range(1, 5)]",
            {"q3 - 4"},
            "with $N$ = `max_n`",
        ),
        "arithmetic mean of the precisions": Mutant(
            BLEU,
            "    bp = brevity_penalty(len(hypothesis), len(reference))\n"
            "    return 100 * bp * sum(precisions) / max_n",
            {"q3 - 3", "q3 - 4"},
            "the geometric mean of four n-gram precisions",
        ),
        "each n-gram matches at most once": Mutant(
            "min(count, ref[gram])",
            "min(count, 1) * (gram in ref)",
            {"q3 - 1", "q3 - 3", "q3 - 4"},
            "let it\nmatch at most as many times as it occurs in the reference",
        ),
        "an empty hypothesis divides by zero": Mutant(
            "    if hyp_len == 0:\n        return 0.0\n",
            "",
            {"q3 - 4"},
            "an empty hypothesis ($c = 0$) gets 0.0",
        ),
        "no n-gram of that order divides 0 by 0": Mutant(
            "    if total == 0:\n        return 0.0\n",
            "",
            {"q3 - 4"},
            "when the hypothesis has no n-gram of that\norder (fewer than $n$ tokens), return 0.0",
        ),
    },
    "q4": {
        "pass@k = c / n": Mutant(
            "    return 1.0 - fail",
            "    return c / n",
            {"q4 - 1", "q4 - 2", "q4 - 3"},
            "Nor is pass@k equal to $c/n$ for\n$k > 1$",
        ),
        "pass@k as 1 - (1 - c/n)^k, draws with replacement": Mutant(
            "    return 1.0 - fail",
            "    return 1.0 - (1 - c / n) ** k",
            {"q4 - 1", "q4 - 2", "q4 - 3"},
            "pass@k is not $1 - (1 - c/n)^k$",
        ),
        "binomials from factorials overflow for large n": Mutant(
            "    for i in range(n - c + 1, n + 1):\n        fail *= 1 - k / i\n",
            "    f = math.factorial\n"
            "    fail = f(n - c) / (f(k) * f(n - c - k)) / (f(n) / (f(k) * f(n - k)))\n",
            {"q4 - 3"},
            "The binomial coefficients overflow a float",
        ),
        "binomials from scipy.special.comb, as floats": Mutant(
            PRODUCT,
            "    from scipy.special import comb\n\n    return 1.0 - comb(n - c, k) / comb(n, k)\n",
            {"q4 - 3"},
            "Compute the ratio as a product of $c$ factors instead",
        ),
        "no check of the arguments": Mutant(CHECK, "", {"q4 - 3"}, "raise a `ValueError` unless"),
        "k > n allowed": Mutant(
            "    if not 0 <= c <= n or not 1 <= k <= n:",
            "    if not 0 <= c <= n or k < 1:",
            {"q4 - 3"},
            "$1 \\le k \\le n$",
        ),
        "the product one factor off": Mutant(
            "    for i in range(n - c + 1, n + 1):",
            "    for i in range(n - c, n):",
            {"q4 - 1", "q4 - 2", "q4 - 3"},
            "\\prod_{i=n-c+1}^{n}",
        ),
        "1.0 already when n - c = k": Mutant(
            "    if n - c < k:",
            "    if n - c <= k:",
            {"q4 - 2", "q4 - 3"},
            "return 1.0 when $n - c < k$",
        ),
    },
    "q5": {
        "recall@k divided by k (that is precision@k)": Mutant(
            RECALL,
            "    return len(set(ranked[:k]) & set(relevant)) / k",
            {"q5 - 1", "q5 - 3"},
            "dividing by $k$ instead gives precision@k",
        ),
        "counts a relevant id twice when it is retrieved twice": Mutant(
            RECALL,
            "    return sum(1 for r in ranked[:k] if r in relevant) / len(relevant)",
            {"q5 - 3"},
            "an id listed twice is found once",
        ),
        "divided by min(k, number relevant)": Mutant(
            RECALL,
            "    return len(set(ranked[:k]) & set(relevant)) / min(k, len(relevant))",
            {"q5 - 3"},
            "Note the\ndenominator",
        ),
        "no relevant ids gives 0.0": Mutant(
            EMPTY,
            "    if not relevant:\n        return 0.0\n",
            {"q5 - 3"},
            "raise a `ValueError` when `relevant` is empty",
        ),
        "the first k - 1 ids": Mutant(
            "set(ranked[:k])", "set(ranked[: k - 1])", {"q5 - 1", "q5 - 3"}, "among the first $k$"
        ),
        "truncates ranked in place": Mutant(
            RECALL,
            "    del ranked[k:]\n    return len(set(ranked) & set(relevant)) / len(relevant)",
            {"q5 - 1", "q5 - 3"},
            "Do not change `ranked`",
        ),
        "BM25 without length normalisation": Mutant(
            NORM, "    length_norm = 1.0", {"q5 - 2", "q5 - 3"}, "$b = 0$ ignores length"
        ),
        "idf without the 1 + (negative for common words)": Mutant(
            IDF,
            "    idf = math.log((n_docs - doc_freq + 0.5) / (doc_freq + 0.5))",
            {"q5 - 2", "q5 - 3"},
            "keeps idf positive even for a word found in every passage",
        ),
        "k1 fixed at 1.5 (the argument ignored)": Mutant(
            TERM,
            "    return idf * tf * 2.5 / (tf + 1.5 * length_norm)",
            {"q5 - 3"},
            "$k_1$ sets how fast\nthe term saturates",
        ),
        "b fixed at 0.75 (the argument ignored)": Mutant(
            NORM,
            "    length_norm = 0.25 + 0.75 * doc_len / avg_doc_len",
            {"q5 - 3"},
            "$b$ sets how much",
        ),
        "without the (k1 + 1) factor": Mutant(
            TERM,
            "    return idf * tf / (tf + k1 * length_norm)",
            {"q5 - 2", "q5 - 3"},
            "\\frac{f\\,(k_1 + 1)}{f + k_1\\,(1 - b + b\\,|d| / \\mathrm{avgdl})}",
        ),
        "length ratio upside down": Mutant(
            NORM,
            "    length_norm = 1 - b + b * avg_doc_len / doc_len",
            {"q5 - 2", "q5 - 3"},
            "b\\,|d| / \\mathrm{avgdl}",
        ),
    },
}

CORRECT: dict[str, dict[str, Correct]] = {
    "q1": {
        "np.add.at for the matrix, then TP, FP and FN read from it": Correct(
            MATRIX,
            "    m = np.zeros((n_classes, n_classes), dtype=np.int64)\n"
            "    np.add.at(m, (np.asarray(gold, dtype=int), np.asarray(pred, dtype=int)), 1)\n"
            "    return m\n",
        ),
        "Counter of (gold, pred) pairs": Correct(
            PRF,
            "    pairs = Counter((g == positive, p == positive) for g, p in zip(gold, pred))\n"
            "    tp, fp, fn = pairs[True, True], pairs[False, True], pairs[True, False]\n"
            "    precision = tp / (tp + fp) if tp + fp else 0.0\n"
            "    recall = tp / (tp + fn) if tp + fn else 0.0\n"
            "    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0\n"
            "    return precision, recall, f1\n",
        ),
        "scikit-learn's precision_recall_fscore_support": Correct(
            PRF,
            "    from sklearn.metrics import precision_recall_fscore_support\n\n"
            "    p, r, f, _ = precision_recall_fscore_support(\n"
            "        gold, pred, labels=[positive], average=None, zero_division=0\n"
            "    )\n"
            "    return float(p[0]), float(r[0]), float(f[0])\n",
        ),
    },
    "q2": {
        "two rows of the table at a time": Correct(
            LCS,
            "    prev = [0] * (len(b) + 1)\n"
            "    for x in a:\n"
            "        row = [0]\n"
            "        for j, y in enumerate(b, 1):\n"
            "            row.append(prev[j - 1] + 1 if x == y else max(prev[j], row[-1]))\n"
            "        prev = row\n"
            "    return prev[-1]\n",
        ),
        "rouge-score's rougeL on the joined tokens": Correct(
            "    lcs = lcs_length(candidate, reference)\n"
            "    if lcs == 0:\n"
            "        return 0.0\n"
            "    precision, recall = lcs / len(candidate), lcs / len(reference)\n" + ROUGE_F,
            "    from rouge_score import rouge_scorer\n\n"
            "    class Words:  # the tokens as they are: no lower-casing, no stemming\n"
            "        def tokenize(self, text):\n"
            "            return text.split()\n\n"
            '    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=Words())\n'
            '    score = scorer.score(" ".join(reference), " ".join(candidate))["rougeL"]\n'
            "    return float(score.fmeasure)\n",
        ),
    },
    "q3": {
        "n-grams by zip, the geometric mean by math.prod": Correct(
            NGRAMS,
            "    hyp = Counter(zip(*(hypothesis[i:] for i in range(n))))\n"
            "    ref = Counter(zip(*(reference[i:] for i in range(n))))\n",
        ),
        "the product of the precisions to the power 1 / N": Correct(
            "    mean_log = sum(math.log(p) for p in precisions) / max_n\n" + BLEU,
            "    bp = brevity_penalty(len(hypothesis), len(reference))\n"
            "    return 100 * bp * math.prod(precisions) ** (1 / max_n)",
        ),
        "sacrebleu with its tokenizer and smoothing off": Correct(
            "    precisions = [",
            "    from sacrebleu.metrics import BLEU\n\n"
            "    if hypothesis:\n"
            '        bleu = BLEU(tokenize="none", smooth_method="none", max_ngram_order=max_n)\n'
            '        hyp, refs = [" ".join(hypothesis)], [[" ".join(reference)]]\n'
            "        return bleu.corpus_score(hyp, refs).score\n"
            "    precisions = [",
        ),
    },
    "q4": {
        "exact integers with math.comb": Correct(
            PRODUCT, "    return 1.0 - math.comb(n - c, k) / math.comb(n, k)\n"
        ),
        "the product with numpy": Correct(
            PRODUCT,
            "    if n - c < k:\n"
            "        return 1.0\n"
            "    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))\n",
        ),
        "lmlib.generation_metrics.pass_at_k": Correct(
            CHECK + PRODUCT,
            "    from lmlib.generation_metrics import pass_at_k as reference\n\n"
            "    return reference(n, c, k)\n",
        ),
    },
    "q5": {
        "recall by walking the relevant set": Correct(
            RECALL,
            "    top = ranked[:k]\n    return sum(r in top for r in relevant) / len(relevant)",
        ),
        "lmlib.metrics.recall_at_k": Correct(
            EMPTY + RECALL,
            "    from lmlib.metrics import recall_at_k as reference\n\n"
            "    return reference(ranked, relevant, k)",
        ),
        "BM25 with the length factor expanded": Correct(
            "    length_norm = 1 - b + b * doc_len / avg_doc_len\n" + TERM,
            "    denominator = tf + k1 * (1 - b) + k1 * b * doc_len / avg_doc_len\n"
            "    return idf * (k1 + 1) * tf / denominator",
        ),
    },
}
