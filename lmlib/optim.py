"""AdamW and its learning-rate schedule, as `lmlib.train.Trainer` uses them (Chapter 5).

- `lr_at`: linear warm-up, then a cosine (or linear) decay to a floor.
- `configure_optimizer`: AdamW, with weight decay on matrices and embeddings only.
- `row_major_trainable`: the weights to be trained, stored in the order AdamW runs fastest on.

Both read their numbers from a `lmlib.train.TrainConfig`.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from lmlib.runtime import check_int

if TYPE_CHECKING:  # only for the annotations: lmlib.train imports this module
    from lmlib.train import TrainConfig


def lr_at(it: int, cfg: TrainConfig) -> float:
    """The learning rate for step ``it``: linear warm-up, cosine decay, then a floor.

    Steps 0 .. warmup_iters - 1 climb linearly to the peak; from warmup_iters to
    lr_decay_iters the rate follows half a cosine down to min_lr, and stays there. With
    ``decay="linear"`` it follows a straight line instead (fine-tuning's schedule).

    Worked example, peak 1.0, floor 0.1, 4 warm-up steps, decay until step 14: the warm-up
    gives 1/4, 2/4, 3/4, 4/4; halfway down (step 9) the cosine factor is 0.5, so
    0.1 + 0.5 * (1.0 - 0.1) = 0.55. Linear, from 1.0 to 0 over 4 steps: 1, 3/4, 2/4, 1/4.

    >>> from lmlib.train import TrainConfig
    >>> cfg = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_iters=4, lr_decay_iters=14)
    >>> [round(lr_at(it, cfg), 4) for it in (0, 1, 3, 4, 9, 14, 100)]
    [0.25, 0.5, 1.0, 1.0, 0.55, 0.1, 0.1]
    >>> cfg = TrainConfig(max_iters=4, learning_rate=1.0, min_lr=0.0, warmup_iters=0,
    ...                   decay="linear")
    >>> [lr_at(it, cfg) for it in range(4)]
    [1.0, 0.75, 0.5, 0.25]
    """
    check_int(it, "it", low=0)
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / cfg.warmup_iters  # it + 1: step 0 is not wasted
    if it >= cfg.decay_iters:
        return cfg.min_lr
    progress = (it - cfg.warmup_iters) / (cfg.decay_iters - cfg.warmup_iters)  # 0 -> 1
    if cfg.decay == "linear":
        coeff = 1.0 - progress  # 1 -> 0
    else:
        coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


def configure_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two parameter groups: weight decay on tensors of 2 or more dimensions only.

    Decay pulls weights towards zero. That suits matrices and embeddings, where it keeps
    individual weights from growing large, but not biases (shifts) or norm gains (which
    start at one on purpose). ``named_parameters`` yields a tied weight (GPT's embedding
    and lm_head) once, so it is neither decayed twice nor updated twice.

    With the tiny GPT of `lmlib.model.count_parameters` (324 parameters): wte 40, wpe 32,
    c_attn 48, attn.c_proj 16, c_fc 64 and mlp.c_proj 64 decay (264); the four biases
    (12 + 4 + 16 + 4) and the three LayerNorms (3 * 8) do not (60).

    >>> from lmlib.model import GPT, GPTConfig
    >>> from lmlib.train import TrainConfig
    >>> model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layers=1, n_heads=1, d_model=4))
    >>> opt = configure_optimizer(model, TrainConfig())
    >>> [(g["weight_decay"], sum(p.numel() for p in g["params"])) for g in opt.param_groups]
    [(0.1, 264), (0.0, 60)]
    """
    params = [p for p in model.parameters() if p.requires_grad]  # each tied tensor once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused kernel updates every tensor in one pass; where it is missing, "foreach"
    # still batches the tensors instead of looping over them in Python.
    device = params[0].device.type if params else "cpu"
    fused = (
        device in ("cuda", "cpu") and "fused" in inspect.signature(torch.optim.AdamW).parameters
    )
    kind = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=cfg.betas, **kind)


def row_major_trainable(model: nn.Module) -> nn.Module:
    """Store every trainable parameter contiguously (row-major), in place; returns ``model``.

    `lmlib.model.column_major_linears` stores weights transposed in memory for faster
    decoding, and a trained weight's gradient and AdamW's two moments take its layout. On a
    CPU, AdamW (fused or foreach) and the gradient's accumulation are slow over such tensors:
    for a full fine-tuning step of SmolLM2's 135M weights on 2 cores, the update took
    0.37-0.44 s column-major against 0.10-0.13 s row-major, and the backward pass about 0.1 s
    more. `lmlib.train.Trainer` calls this before training. Values, shapes, tied weights and
    frozen parameters are left as they are; only the memory order changes.

    >>> from lmlib.model import column_major_linears
    >>> layer = column_major_linears(nn.Linear(3, 2))
    >>> layer.weight.is_contiguous(), row_major_trainable(layer).weight.is_contiguous()
    (False, True)
    """
    for p in model.parameters():  # a tied weight once
        if p.requires_grad and not p.is_contiguous():
            p.data = p.data.contiguous()
    return model
