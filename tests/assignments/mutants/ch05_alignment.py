"""Mutation table of ch05_alignment: the SFT loss mask, the DPO loss, group advantages.

The format is in ``mutants/__init__.py``.
"""

from mutants import Correct, Mutant

TARGETS = "    targets[:-1] = np.where(mask[1:], ids[1:], -100)"
FULL = "    targets = np.full(len(ids), -100, dtype=np.int64)"
LOSS = "    return float(-log_probs[rows, targets[keep]].mean())"
LOSS_BODY = """\
    keep = targets != -100
    rows = np.arange(len(targets))[keep]
    return float(-log_probs[rows, targets[keep]].mean())
"""
CHOSEN = "    chosen = policy_chosen - ref_chosen  # log pi / pi_ref of the chosen"
REJECTED = "    rejected = policy_rejected - ref_rejected"
MARGIN = "    margin = beta * (chosen - rejected)"
DPO_RETURN = "    return float(np.mean(np.logaddexp(0.0, -margin)))"
DPO_FORMULA = (r"(\log \pi(y_c) - \log \pi_{\text{ref}}(y_c)) - (\log \pi(y_r) - "
               r"\log \pi_{\text{ref}}(y_r))")  # fmt: skip
STABLE = ("compute $-\\log\\sigma(m)$ in a\nform that neither overflows nor takes the "
          "logarithm of 0")  # fmt: skip
GROUPS = "    groups = np.asarray(rewards, dtype=float).reshape(-1, group_size)"
MEAN = "    mean = groups.mean(axis=1, keepdims=True)"
STD = "    std = groups.std(axis=1, ddof=1, keepdims=True)"
ADV_RETURN = "    return ((groups - mean) / (std + 1e-4)).reshape(-1)"
ADV_BODY = f"{GROUPS}\n{MEAN}\n{STD}\n{ADV_RETURN}\n"

MUTANTS: dict[str, dict[str, Mutant]] = {
    "q1": {
        "no shift: each token's own id": Mutant(
            TARGETS,
            "    targets = np.where(mask, ids, -100).astype(np.int64)",
            {"q1 - 1", "q1 - 2"},
            "`targets[t] = ids[t + 1]`",
        ),
        "the mask read at t instead of t + 1": Mutant(
            TARGETS,
            "    targets[:-1] = np.where(mask[:-1], ids[1:], -100)",
            {"q1 - 1", "q1 - 2"},
            "where token `t + 1` is an assistant token",
        ),
        "the last position wraps around to the first token": Mutant(
            TARGETS,
            "    targets = np.where(np.roll(mask, -1), np.roll(ids, -1), -100)",
            {"q1 - 2"},
            "including the last position, which predicts nothing",
        ),
        "a list instead of an array": Mutant(
            "    return targets\n",
            "    return targets.tolist()\n",
            {"q1 - 2"},
            "return a NumPy integer array",
        ),
        "a float array": Mutant(
            FULL,
            "    targets = np.full(len(ids), -100.0)",
            {"q1 - 2"},
            "return a NumPy integer array",
        ),
        "the loss averaged over every position, -100 ones counted as 0": Mutant(
            LOSS,
            "    picked = log_probs[np.arange(len(targets)), np.where(keep, targets, 0)]\n"
            "    return float(-np.where(keep, picked, 0.0).mean())",
            {"q1 - 3"},
            "over the positions whose target is not `-100`",
        ),
        "indexes log_probs with the -100 targets": Mutant(
            LOSS,
            "    return float(-log_probs[np.arange(len(targets)), targets][keep].mean())",
            {"q1 - 3"},
            "a `-100` target must never be used to index `log_probs`",
        ),
        "the sum instead of the mean": Mutant(
            LOSS,
            "    return float(-log_probs[rows, targets[keep]].sum())",
            {"q1 - 3"},
            "the mean of\n`-log_probs[t, targets[t]]`",
        ),
        "an array instead of a float": Mutant(
            LOSS,
            "    return -log_probs[rows, targets[keep]].mean(keepdims=True)",
            {"q1 - 3"},
            "return, as a float",
        ),
        "overwrites the -100 targets in place": Mutant(
            LOSS_BODY,
            "    keep = targets != -100\n"
            "    targets[~keep] = 0\n"
            "    picked = log_probs[np.arange(len(targets)), targets]\n"
            "    return float(-(picked * keep).sum() / keep.sum())\n",
            {"q1 - 3"},
            "Do not change the arguments.",
        ),
    },
    "q2": {
        "the reference's sign flipped": Mutant(
            f"{CHOSEN}\n{REJECTED}",
            "    chosen = policy_chosen + ref_chosen\n"
            "    rejected = policy_rejected + ref_rejected",
            {"q2 - 2"},
            DPO_FORMULA,
        ),
        "beta left out": Mutant(
            MARGIN,
            "    margin = chosen - rejected",
            {"q2 - 1", "q2 - 2"},
            r"\beta \big[",
        ),
        "beta on the chosen log-ratio only": Mutant(
            MARGIN,
            "    margin = beta * chosen - rejected",
            {"q2 - 1", "q2 - 2"},
            r"\beta \big[",
        ),
        "chosen and rejected swapped": Mutant(
            MARGIN,
            "    margin = beta * (rejected - chosen)",
            {"q2 - 1", "q2 - 2"},
            DPO_FORMULA,
        ),
        "policy and reference swapped in the rejected log-ratio": Mutant(
            REJECTED,
            "    rejected = ref_rejected - policy_rejected",
            {"q2 - 1", "q2 - 2"},
            DPO_FORMULA,
        ),
        "the log of the sigmoid: log 0 for large negative margins": Mutant(
            DPO_RETURN,
            "    return float(np.mean(-np.log(1 / (1 + np.exp(-margin)))))",
            {"q2 - 2"},
            STABLE,
        ),
        "log1p(exp(-m)) overflows": Mutant(
            DPO_RETURN,
            "    return float(np.mean(np.log1p(np.exp(-margin))))",
            {"q2 - 2"},
            STABLE,
        ),
        "the sum over pairs": Mutant(
            DPO_RETURN,
            "    return float(np.sum(np.logaddexp(0.0, -margin)))",
            {"q2 - 2"},
            "the mean over the $N$ pairs",
        ),
        "an array instead of a float": Mutant(
            DPO_RETURN,
            "    return np.logaddexp(0.0, -margin).mean(keepdims=True)",
            {"q2 - 2"},
            "Return, as a float",
        ),
    },
    "q3": {
        "no Bessel correction (ddof=0)": Mutant(
            STD,
            "    std = groups.std(axis=1, keepdims=True)",
            {"q3 - 1", "q3 - 2"},
            "(`ddof=1`)",
        ),
        "the batch's mean and std instead of the group's": Mutant(
            f"{MEAN}\n{STD}",
            "    mean = groups.mean(keepdims=True)\n    std = groups.std(ddof=1, keepdims=True)",
            {"q3 - 1", "q3 - 2"},
            r"\operatorname{mean}(\text{its group})",
        ),
        "groups taken with a stride instead of one after another": Mutant(
            ADV_BODY,
            "    groups = np.asarray(rewards, dtype=float).reshape(group_size, -1).T\n"
            f"{MEAN}\n{STD}\n"
            "    return ((groups - mean) / (std + 1e-4)).T.reshape(-1)\n",
            {"q3 - 1", "q3 - 2"},
            "the $P$ groups one after another",
        ),
        "no 1e-4: nan for a group of equal rewards": Mutant(
            ADV_RETURN,
            "    return ((groups - mean) / std).reshape(-1)",
            {"q3 - 1", "q3 - 2"},
            "A group whose rewards are all equal gets advantages 0",
        ),
        "not divided by the standard deviation": Mutant(
            ADV_RETURN,
            "    return (groups - mean).reshape(-1)",
            {"q3 - 1", "q3 - 2"},
            r"\operatorname{std}(\text{its group}) + 10^{-4}",
        ),
        "a (P, G) array": Mutant(
            ADV_RETURN,
            "    return (groups - mean) / (std + 1e-4)",
            {"q3 - 1", "q3 - 2"},
            "return a 1-D float array of the same length",
        ),
        "changes rewards in place": Mutant(
            ADV_RETURN,
            "    groups -= mean\n    groups /= std + 1e-4\n    return groups.reshape(-1)",
            {"q3 - 2"},
            "Do not change `rewards`.",
        ),
    },
}

CORRECT: dict[str, dict[str, Correct]] = {
    "q1": {
        "a loop over positions, and a list of labelled positions": Correct(
            f"{FULL}\n{TARGETS}\n",
            f"{FULL}\n"
            "    for t in range(len(ids) - 1):\n"
            "        if is_assistant[t + 1]:\n"
            "            targets[t] = ids[t + 1]\n",
        ),
        "np.take_along_axis on the labelled rows": Correct(
            LOSS_BODY,
            "    keep = np.flatnonzero(np.asarray(targets) != -100)\n"
            "    picked = np.take_along_axis(log_probs[keep], targets[keep][:, None], axis=1)\n"
            "    return float(-picked.mean())\n",
        ),
    },
    "q2": {
        "the softplus written out: max(-m, 0) + log1p(exp(-|m|))": Correct(
            DPO_RETURN,
            "    m = np.asarray(margin, dtype=float)\n"
            "    return float(np.mean(np.maximum(-m, 0) + np.log1p(np.exp(-np.abs(m)))))",
        ),
    },
    "q3": {
        "a loop over groups with the statistics module": Correct(
            ADV_BODY,
            "    import statistics\n\n"
            "    out = []\n"
            "    for start in range(0, len(rewards), group_size):\n"
            "        g = [float(r) for r in rewards[start : start + group_size]]\n"
            "        mean, std = statistics.fmean(g), statistics.stdev(g)\n"
            "        out += [(r - mean) / (std + 1e-4) for r in g]\n"
            "    return np.array(out)\n",
        ),
    },
}
