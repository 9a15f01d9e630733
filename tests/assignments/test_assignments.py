"""The otter-grader assignments grade as intended.

For every ``assignments/<name>/<name>.ipynb``: the solution gets full marks, the blank
student notebook gets zero on every test case, the committed ``student/`` folder equals a
fresh build, and each partly right submission in ``MUTANTS`` (the solution with one
plausible mistake) fails exactly the test cases meant to catch that mistake.

These call the functions behind ``python -m booktools.assignments check``. Each grading runs
a Jupyter kernel through ``otter run`` (about 5 s), hence ``slow``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

from booktools import assignments

ROOT = Path(__file__).resolve().parents[2]

NAMES = [m.stem for m in assignments.find_masters()]


class Mutant(NamedTuple):
    old: str  # text in the solution notebook, exactly once
    new: str  # the mistake
    fails: set[str]  # the test cases that must fail; all others must pass


# Partly right submissions, per assignment. A mistake caught by no public test shows what
# the hidden tests are for.
MUTANTS: dict[str, dict[str, Mutant]] = {
    "ch01_background": {
        "bigrams wrap around": Mutant(
            "zip(tokens, tokens[1:], strict=False)",
            "zip(tokens, tokens[1:] + tokens[:1], strict=False)",
            {"q1 - 1", "q1 - 2", "q1 - 3"},
        ),
        "perplexity without the minus sign": Mutant(
            "math.exp(-sum(log_probs) / len(log_probs))",
            "math.exp(sum(log_probs) / len(log_probs))",
            {"q2 - 1", "q2 - 2"},
        ),
        "perplexity as 2 ** nats": Mutant(
            "math.exp(-sum(log_probs) / len(log_probs))",
            "2 ** (-sum(log_probs) / len(log_probs))",
            {"q2 - 1", "q2 - 2"},
        ),
        "perplexity([]) raises ZeroDivisionError (hidden test only)": Mutant(
            'raise ValueError("perplexity of an empty sequence is undefined")',
            "pass",
            {"q2 - 3"},
        ),
        "add-k without k * V in the denominator": Mutant(
            "(context_total + k * vocab_size)",
            "(context_total)",
            {"q3 - 1", "q3 - 2", "q3 - 3", "q3 - 4"},
        ),
        "c(context) counts distinct next tokens": Mutant(
            "sum(c for (prev, _), c in counts.items() if prev == context)",
            "sum(1 for (prev, _), c in counts.items() if prev == context)",
            {"q3 - 1", "q3 - 3", "q3 - 4"},
        ),
        "ties broken by dict order (hidden test only)": Mutant(
            "return min(candidates)[1]",
            "return min(candidates, key=lambda ct: ct[0])[1]",
            {"q4 - 2"},
        ),
    },
    "ch02_core_concepts": {
        "pairs wrap around": Mutant(
            "zip(ids, ids[1:], strict=False)",
            "zip(ids, ids[1:] + ids[:1], strict=False)",
            {"q1 - 1", "q1 - 2", "q1 - 3", "q3 - 1", "q3 - 4"},
        ),
        "BPE ties broken by the most recent pair (hidden test only)": Mutant(
            "pair = max(counts, key=counts.get)",
            "pair = max(reversed(counts), key=counts.get)",
            {"q3 - 2"},
        ),
        "cosine without normalisation": Mutant(
            "np.dot(a, b) / (norm_a * norm_b)",
            "np.dot(a, b)",
            {"q4 - 1", "q4 - 2", "q4 - 3"},
        ),
    },
    "ch03_transformer": {
        "sin and cos swapped": Mutant(
            "    pe[:, 0::2] = np.sin(angles)\n    pe[:, 1::2] = np.cos(angles)",
            "    pe[:, 0::2] = np.cos(angles)\n    pe[:, 1::2] = np.sin(angles)",
            {"q1 - 1", "q1 - 2"},
        ),
        "heads scaled by sqrt(d) instead of sqrt(d_k) (hidden test only)": Mutant(
            "        weights = causal_softmax(Q[:, cols] @ K[:, cols].T / np.sqrt(d_k))",
            "        weights = causal_softmax(Q[:, cols] @ K[:, cols].T / np.sqrt(d))",
            {"q2 - 2", "q4 - 2"},
        ),
        "output projection W_o forgotten": Mutant(
            "    return np.concatenate(heads, axis=1) @ W_o",
            "    return np.concatenate(heads, axis=1)",
            {"q2 - 1", "q2 - 2", "q4 - 2"},
        ),
        "variance divided by d - 1": Mutant(
            "    var = X.var(axis=-1, keepdims=True)  # divides by d",
            "    var = X.var(axis=-1, keepdims=True, ddof=1)",
            {"q3 - 1", "q3 - 2", "q4 - 2"},
        ),
        "residual added to the normalized input": Mutant(
            '    h = layer_norm(X, p["ln2_gain"], p["ln2_bias"])\n'
            '    return X + gelu(h @ p["W_1"] + p["b_1"]) @ p["W_2"] + p["b_2"]',
            '    h = layer_norm(X, p["ln2_gain"], p["ln2_bias"])\n'
            '    return h + gelu(h @ p["W_1"] + p["b_1"]) @ p["W_2"] + p["b_2"]',
            {"q4 - 1", "q4 - 2"},
        ),
    },
    "ch04_mathematics": {
        "softmax without subtracting the maximum (hidden test only)": Mutant(
            "    z = z - z.max(axis=-1, keepdims=True)  # the largest allowed score becomes 0",
            "    z = z + 0.0",
            {"q1 - 2"},
        ),
        "attention without V": Mutant(
            "    return masked_softmax(scores, mask) @ V",
            "    return masked_softmax(scores, mask)",
            {"q2 - 1", "q2 - 3"},
        ),
        "scores not scaled by sqrt(d_k) (hidden test only)": Mutant(
            "    scores = Q @ K.T / np.sqrt(W_k.shape[1])",
            "    scores = Q @ K.T",
            {"q2 - 3"},
        ),
        "position embedding forgotten": Mutant(
            "    return V * d + T_max * d + L * (norms + attn + ffn) + 2 * d",
            "    return V * d + L * (norms + attn + ffn) + 2 * d",
            {"q3 - 1", "q3 - 2"},
        ),
    },
    "ch05_practice": {
        "top-k drops ties with the k-th": Mutant(
            "    return np.where(logits < kth, -np.inf, logits)",
            "    return np.where(logits <= kth, -np.inf, logits)",
            {"q1 - 1", "q1 - 2"},
        ),
        "top-p counts a token's own probability": Mutant(
            "    keep[order] = mass_before < p",
            "    keep[order] = np.cumsum(probs[order]) < p",
            {"q2 - 1", "q2 - 2"},
        ),
        "top-p without a stable softmax (hidden test only)": Mutant(
            "    probs = np.exp(logits - logits.max())",
            "    probs = np.exp(logits)",
            {"q2 - 2"},
        ),
        "warm-up starts at zero": Mutant(
            "        return peak * (it + 1) / warmup",
            "        return peak * it / warmup",
            {"q3 - 1"},
        ),
        "cached attention not scaled by sqrt(d) (hidden test only)": Mutant(
            "    scores = K_new @ q / np.sqrt(len(q))",
            "    scores = K_new @ q",
            {"q4 - 3"},
        ),
        "new key and value prepended (hidden test only)": Mutant(
            "    K_new = np.concatenate([K_cache, k[None]], axis=0)\n"
            "    V_new = np.concatenate([V_cache, v[None]], axis=0)",
            "    K_new = np.concatenate([k[None], K_cache], axis=0)\n"
            "    V_new = np.concatenate([v[None], V_cache], axis=0)",
            {"q4 - 2"},
        ),
    },
    "ch06_applications": {
        "F1 as the arithmetic mean of precision and recall": Mutant(
            "f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0",
            "f1 = (precision + recall) / 2",
            {"q1 - 2"},
        ),
        "precision 0 / 0 raises ZeroDivisionError (hidden test only)": Mutant(
            "    precision = tp / (tp + fp) if tp + fp else 0.0",
            "    precision = tp / (tp + fp)",
            {"q1 - 3"},
        ),
        "ROUGE-L with the longest common substring": Mutant(
            "                L[i][j] = max(L[i - 1][j], L[i][j - 1])\n"
            "    return L[len(a)][len(b)]",
            "                L[i][j] = 0\n    return max(max(row) for row in L)",
            {"q2 - 1", "q2 - 2"},
        ),
        "ROUGE-L counts shared tokens, ignoring order (hidden test only)": Mutant(
            "    lcs = lcs_length(candidate, reference)",
            "    lcs = sum((Counter(candidate) & Counter(reference)).values())",
            {"q2 - 3"},
        ),
        "BLEU without clipping": Mutant(
            "min(count, ref[gram])",
            "count * (gram in ref)",
            {"q3 - 1"},
        ),
        "sentence BLEU without the brevity penalty": Mutant(
            "100 * brevity_penalty(len(hypothesis), len(reference)) * math.exp(mean_log)",
            "100 * math.exp(mean_log)",
            {"q3 - 3"},
        ),
        "brevity penalty also for long hypotheses": Mutant(
            "    if hyp_len >= ref_len:\n        return 1.0\n",
            "",
            {"q3 - 2", "q3 - 4"},
        ),
        "BLEU takes log 0 (hidden test only)": Mutant(
            "    if min(precisions) == 0:",
            "    if not precisions:",
            {"q3 - 4"},
        ),
        "pass@k = c / n": Mutant(
            "    return 1.0 - fail",
            "    return c / n",
            {"q4 - 1", "q4 - 2", "q4 - 3"},
        ),
        "pass@k as 1 - (1 - c/n)^k, draws with replacement": Mutant(
            "    return 1.0 - fail",
            "    return 1.0 - (1 - c / n) ** k",
            {"q4 - 1", "q4 - 2", "q4 - 3"},
        ),
        "pass@k from factorials overflows for large n (hidden test only)": Mutant(
            "    for i in range(n - c + 1, n + 1):\n        fail *= 1 - k / i\n",
            "    f = math.factorial\n"
            "    fail = f(n - c) / (f(k) * f(n - c - k)) / (f(n) / (f(k) * f(n - k)))\n",
            {"q4 - 3"},
        ),
        "recall@k divided by k (that is precision@k)": Mutant(
            "    return len(set(ranked[:k]) & set(relevant)) / len(relevant)",
            "    return len(set(ranked[:k]) & set(relevant)) / k",
            {"q5 - 1", "q5 - 3"},
        ),
        "BM25 without length normalisation": Mutant(
            "    length_norm = 1 - b + b * doc_len / avg_doc_len",
            "    length_norm = 1.0",
            {"q5 - 2", "q5 - 3"},
        ),
    },
}

MUTANT_PARAMS = [
    pytest.param(name, label, id=f"{name}: {label}")
    for name in NAMES
    for label in MUTANTS.get(name, {})
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("assignments")


@pytest.fixture(scope="module")
def report(workdir):
    """check() per assignment, run once and shared by the tests below."""
    cache = {}

    def get(name: str):
        if name not in cache:
            master = assignments.ASSIGNMENTS / name / f"{name}.ipynb"
            (workdir / name).mkdir()
            cache[name] = assignments.check(master, workdir / name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def mutant_grades(report, workdir):
    """All partly right submissions of an assignment, graded in parallel (one kernel each)."""
    cache = {}

    def get(name: str):
        if name not in cache:
            r = report(name)
            solution = r.dist / "autograder" / f"{name}.ipynb"
            subs = {
                label: assignments.edit_notebook(
                    solution, workdir / name / f"mutant-{i}" / solution.name, m.old, m.new
                )
                for i, (label, m) in enumerate(MUTANTS[name].items())
            }
            with ThreadPoolExecutor(min(len(subs), os.cpu_count() or 1)) as pool:
                futures = {
                    label: pool.submit(assignments.grade, r.autograder_zip, nb, workdir / name)
                    for label, nb in subs.items()
                }
                cache[name] = {label: f.result() for label, f in futures.items()}
        return cache[name]

    return get


def test_parse_results_reads_each_case():
    expected = {"q1": [("q1 - 1", False), ("q1 - 2", True)], "q2": [("q2 - 1", False)]}
    results = {
        "tests": [
            {"name": "Public Tests", "output": "...", "status": "failed"},
            {
                "name": "q1",
                "score": 1,
                "max_score": 2,
                "output": "q1 results:\n    q1 - 1 result:\n        ✅ Test case passed\n\n"
                "    q1 - 2 result:\n        ❌ Test case failed\n        Error at line 3",
            },
            {
                "name": "q2",
                "score": 1,
                "max_score": 1,
                "output": "q2 results: All test cases passed!",
            },
        ]
    }
    grade = assignments.parse_results(results, expected)
    assert grade.cases == {"q1 - 1": True, "q1 - 2": False, "q2 - 1": True}
    assert (grade.score, grade.max_score) == (2, 3)


def test_assignments_found():
    assert NAMES, "no assignments/<name>/<name>.ipynb found"


@pytest.mark.parametrize("name", NAMES)
def test_every_assignment_has_partly_right_submissions(name):
    assert MUTANTS.get(name), f"add partly right submissions for {name} to MUTANTS"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_solution_gets_full_marks(report, name):
    r = report(name)
    assert r.solution.max_score > 0
    assert not r.solution.failed, f"the solution fails {sorted(r.solution.failed)}"
    assert r.solution.score == r.solution.max_score


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_blank_scores_zero_on_every_case(report, name):
    r = report(name)
    assert r.blank.cases.keys() == r.solution.cases.keys()
    passed = sorted(n for n, ok in r.blank.cases.items() if ok)
    assert not passed, f"the blank notebook passes {passed}"
    assert r.blank.score == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_committed_student_folder_is_fresh(report, name):
    r = report(name)
    stale = assignments.diff_dirs(assignments.ASSIGNMENTS / name / "student", r.dist / "student")
    assert not stale, f"{stale}: {assignments.REBUILD_HINT}"


@pytest.mark.slow
@pytest.mark.parametrize(("name", "label"), MUTANT_PARAMS)
def test_partly_right_fails_exactly_the_expected_cases(mutant_grades, name, label):
    grade = mutant_grades(name)[label]
    expected = MUTANTS[name][label].fails
    assert grade.failed == expected, f"failed {sorted(grade.failed)}, expected {sorted(expected)}"
    assert 0 < grade.score < grade.max_score
