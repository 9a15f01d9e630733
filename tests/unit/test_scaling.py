"""Compute-optimal sizes (lmlib.scaling): C = 6 N D with D = 20 N, checked against the
Chinchilla paper's own 70B-parameter, 1.4T-token model."""

import pytest

from lmlib.scaling import compute_optimal


def test_compute_optimal_solves_6nd_with_20_tokens_per_parameter():
    for flops in (1e21, 1e23, 3.14e23):
        n, d = compute_optimal(flops)
        assert 6 * n * d == pytest.approx(flops) and d / n == pytest.approx(20)
    n, d = compute_optimal(6 * 70e9 * 1.4e12)  # Chinchilla: 70B parameters on 1.4T tokens
    assert n == pytest.approx(70e9, rel=0.01) and d == pytest.approx(1.4e12, rel=0.01)
    n, d = compute_optimal(1e21, tokens_per_param=100)
    assert d / n == pytest.approx(100)
    for bad, name in [((0,), "flops"), ((-1.0,), "flops"), ((float("inf"),), "flops"),
                      ((1e21, 0), "tokens_per_param")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"{name} must be a finite number > 0"):
            compute_optimal(*bad)
