"""Batches from one long token sequence, and the loss estimated on fixed ones (Chapter 5).

A language model trains on random windows of its text: `get_batch` cuts ``batch_size``
windows of ``block_size + 1`` tokens, and the targets are the inputs shifted by one, so every
position of every window is a next-token prediction. `estimate_loss` averages the loss over
a fixed set of such batches, so that two estimates differ only because the model changed,
not because the batches did. `lmlib.train.Trainer` uses both.

Shape legend: B batch, T time (``block_size``).
"""

from __future__ import annotations

import torch

from lmlib.runtime import check_int, eval_mode


def check_tokens(data, block_size: int, name: str = "data") -> None:
    """Raise a clear error unless ``data`` is a 1-D integer tensor with room for a window."""
    if not isinstance(data, torch.Tensor):
        raise TypeError(
            f"{name} must be a 1-D torch tensor of token ids, got {type(data).__name__}"
        )
    if data.dim() != 1:
        raise ValueError(
            f"{name} must be 1-D (one long token sequence), got shape {tuple(data.shape)}"
        )
    if data.dtype.is_floating_point or data.dtype.is_complex or data.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got {data.dtype}")
    if len(data) < block_size + 1:
        raise ValueError(
            f"{name} has {len(data)} tokens, fewer than block_size + 1 = "
            f"{block_size + 1}: a window needs one more token for its last target"
        )


def get_batch(data, batch_size, block_size, generator=None, device=None):
    """``batch_size`` random windows of ``data``: inputs x and targets y, both (B, T) long.

    y is x shifted left by one (``y[b, t] = x[b, t + 1]``): at every position the target is
    the token that comes next. The same ``generator`` state gives the same batch.

    >>> data = torch.arange(10, 20)  # ten tokens: 3 + 1 fit from positions 0..6
    >>> x, y = get_batch(data, 2, 3, torch.Generator().manual_seed(0))  # starts 4 and 3
    >>> x
    tensor([[14, 15, 16],
            [13, 14, 15]])
    >>> y  # each target is the token after its input
    tensor([[15, 16, 17],
            [14, 15, 16]])
    """
    check_int(batch_size, "batch_size", low=1)
    check_int(block_size, "block_size", low=1)
    check_tokens(data, block_size)
    # A window of block_size + 1 tokens must fit, so it may start at 0 .. len - block_size - 1.
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    # One gather for the whole batch, no Python loop: row b holds ix[b], ..., ix[b] + T.
    offsets = torch.arange(block_size + 1)  # (T + 1,)
    windows = data[(ix[:, None] + offsets).to(data.device)]  # (B, 1) + (T + 1,) -> (B, T + 1)
    x = windows[:, :-1].long()  # (B, T) inputs
    y = windows[:, 1:].long()  # (B, T) targets
    if device is not None and torch.device(device).type == "cuda":
        # Pinned host memory lets the copy overlap with the GPU's work on the previous step.
        x, y = x.pin_memory(), y.pin_memory()
    if device is not None:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    return x, y


@torch.no_grad()
def estimate_loss(model, splits, eval_iters, batch_size, block_size, seed=0, amp_dtype=None):
    """Mean loss over ``eval_iters`` batches of each split: ``{"train": ..., "val": ...}``.

    Each split gets a fresh generator seeded with ``seed``, so every call sees the same
    batches and two estimates differ only because the model did. The model runs in eval
    mode (no dropout) without gradients, and is put back in the mode it was in. With an
    ``amp_dtype`` (CUDA's bfloat16 or float16) the forward passes run in mixed precision.

    A model whose logits are all zero predicts the uniform distribution, so its loss is
    ln V exactly; for V = 4 that is ln 4 = 1.3863.

    >>> from lmlib.model import GPT, GPTConfig
    >>> model = GPT(GPTConfig(block_size=4, vocab_size=4, n_layers=1, n_heads=1, d_model=8))
    >>> _ = torch.nn.init.zeros_(model.lm_head.weight)  # logits = features @ 0 = 0
    >>> splits = {"train": torch.tensor([0, 1, 2, 3] * 3), "val": torch.tensor([3, 2, 1, 0] * 2)}
    >>> {k: round(v, 4) for k, v in estimate_loss(model, splits, 2, 2, 4).items()}
    {'train': 1.3863, 'val': 1.3863}
    """
    check_int(eval_iters, "eval_iters", low=1)
    if not isinstance(splits, dict) or not splits:
        raise TypeError(f"splits must be a non-empty dict name -> token tensor, got "
                        f"{type(splits).__name__}")  # fmt: skip
    device = next(model.parameters()).device
    losses = {}
    with eval_mode(model):
        for name, data in splits.items():
            generator = torch.Generator().manual_seed(seed)
            total = torch.zeros((), device=device)
            for _ in range(eval_iters):
                x, y = get_batch(data, batch_size, block_size, generator, device)
                with torch.autocast(device.type, amp_dtype, enabled=amp_dtype is not None):
                    total += model(x, y).loss.float()
            losses[name] = total.item() / eval_iters  # one sync per split, not per batch
    return losses
