"""Compute-optimal model sizes: Chinchilla's rule of thumb (Chapter 7).

Training a model of N parameters on D tokens costs about C = 6 N D floating-point operations
(2 N per token for the forward pass, 4 N for the backward pass). For a fixed budget C, a
bigger model sees fewer tokens; Hoffmann et al. (2022) trained over 400 models and found the
loss lowest at about D = 20 N, 20 tokens per parameter. `compute_optimal` solves the two
equations for N and D. Published models and their budgets are in `lmlib.history`.
"""

from __future__ import annotations

import math

from lmlib.runtime import check_number


def compute_optimal(flops: float, tokens_per_param: float = 20.0) -> tuple[float, float]:
    """Parameters N and training tokens D that spend ``flops`` compute-optimally.

    Implements equation :eq:`eq-training-flops` of Chapter 4
    (:ref:`its tests <test-eq-training-flops>`).

    Training costs C = 6 N D FLOPs; Hoffmann et al. (2022) found loss lowest for a given C at
    about D = 20 N. Together: N = sqrt(C / (6 * 20)), D = 20 N.

    >>> compute_optimal(1.2e20)  # 6 * 1e9 parameters * 2e10 tokens
    (1000000000.0, 20000000000.0)
    """
    check_number(flops, "flops", low=0, open_low=True)
    check_number(tokens_per_param, "tokens_per_param", low=0, open_low=True)
    n = math.sqrt(flops / (6.0 * tokens_per_param))
    return n, tokens_per_param * n
