"""A decoder's inputs: token ids (or embeddings), their positions, and what each may see.

Both models of `lmlib.model` start their forward pass with `decoder_inputs`, which checks
the token ids early with clear errors (deep inside the model the same mistakes are cryptic),
embeds them, and works out positions and the attention mask. On its own, a decoder sees
tokens 0..T-1 at positions 0..T-1 under a causal mask. Two things from Chapter 5 change that:

- a `lmlib.kvcache.KVCache` holding ``past`` earlier tokens: the T new tokens sit at
  positions past..past+T-1, and new token t may see every cached key and new keys up to t;
- left padding, so that prompts of different lengths run as one batch: an
  ``attention_mask`` (B, past + T) with 0 for padding. No real token may attend to padding,
  and positions count from each row's first real token, so that a padded prompt computes
  exactly what the prompt alone would.

Masks are True where a query may attend to a key. Shape legend: B batch, T new tokens,
S keys (cached + new), C channels, V vocabulary size.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def decoder_mask(T: int, past: int = 0, attention_mask=None, device=None) -> torch.Tensor:
    """Bool (B or 1, 1, T, past + T) mask for T new tokens after ``past`` cached ones.

    New token t sits at index past + t and may see key s if s <= past + t (causal) and s is
    not padding (``attention_mask`` (B, past + T), 0 = padding).

    >>> decoder_mask(2, past=1).int()  # one cached token, two new ones
    tensor([[[[1, 1, 0],
              [1, 1, 1]]]], dtype=torch.int32)
    >>> decoder_mask(3, attention_mask=torch.tensor([[0, 1, 1]])).int()  # left padding
    tensor([[[[1, 0, 0],
              [0, 1, 0],
              [0, 1, 1]]]], dtype=torch.int32)
    """
    query = torch.arange(past, past + T, device=device)[:, None]  # (T, 1) index of each query
    key = torch.arange(past + T, device=device)[None, :]  # (1, S)
    mask = (key <= query)[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        real = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
        # A padding query would see no key at all, and a softmax over only -inf is nan. Let
        # it see itself: its output is never used, and no real token attends to it.
        mask = (mask & real) | (key == query)  # (B, 1, T, S)
    return mask


def positions_and_mask(B: int, T: int, block_size: int, cache=None, attention_mask=None,
                       device=None):  # fmt: skip
    """Positions (T,) or (B, T) of B rows of T new tokens, and their mask for ``attend``.

    The mask is None where `lmlib.attention.attend` needs none: plain causal attention with
    nothing cached, or one new token that may see everything cached.

    >>> pos, mask = positions_and_mask(1, 3, block_size=8)
    >>> pos, mask
    (tensor([0, 1, 2]), None)
    >>> pos, mask = positions_and_mask(2, 3, 8, attention_mask=torch.tensor([[1, 1, 1],
    ...                                                                       [0, 1, 1]]))
    >>> pos  # the padded row's real tokens count from 0
    tensor([[0, 1, 2],
            [0, 0, 1]])
    """
    past = 0 if cache is None else cache.length
    if past + T > block_size:
        raise ValueError(f"{past} cached + {T} new tokens exceed the model's block_size "
                         f"{block_size}")  # fmt: skip
    if cache is not None and (cache.batch_size != B or past + T > cache.max_len):
        raise ValueError(f"the cache holds {cache.batch_size} rows of {cache.max_len} "
                         f"positions; got {B} rows reaching position {past + T}")  # fmt: skip
    if attention_mask is None:
        pos = torch.arange(past, past + T, device=device)  # (T,)
        # None is plain causal (nothing cached) or one new token that may see everything.
        mask = None if past == 0 or T == 1 else decoder_mask(T, past, device=device)
        return pos, mask
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != (B, past + T):
        shape = (tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor)
                 else type(attention_mask).__name__)  # fmt: skip
        raise ValueError(f"attention_mask must have shape (B, cached + new) = "
                         f"{(B, past + T)}, got {shape}")  # fmt: skip
    # Left padding: count positions from each row's first real token, so that a padded
    # prompt sees the same positions as the prompt alone.
    pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]  # (B, T)
    return pos, decoder_mask(T, past, attention_mask, device=device)


def decoder_inputs(embedding: nn.Embedding, idx, inputs_embeds, block_size: int, cache=None,
                   attention_mask=None):  # fmt: skip
    """(x, pos, mask): embeddings (B, T, C) of the new tokens, positions, mask.

    Exactly one of ``idx`` (B, T) token ids and ``inputs_embeds`` (B, T, C) is given; the
    embeddings are used as they are (prompt tuning prepends vectors that are no token).
    ``pos`` and ``mask`` are `positions_and_mask`'s.

    >>> x, pos, mask = decoder_inputs(nn.Embedding(5, 2), torch.tensor([[4, 1, 2]]), None, 8)
    >>> tuple(x.shape), pos, mask
    ((1, 3, 2), tensor([0, 1, 2]), None)
    """
    if (idx is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of idx (B, T) token ids and inputs_embeds (B, T, C)")
    if idx is not None:
        idx = check_token_ids(idx, embedding.num_embeddings)
        if idx.size(1) > block_size:
            raise ValueError(f"sequence length {idx.size(1)} exceeds the model's block_size "
                             f"{block_size}")  # fmt: skip
        x = embedding(idx)
    else:
        C, x = embedding.embedding_dim, inputs_embeds
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.size(-1) != C:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"inputs_embeds must be a (B, T, {C}) tensor, got shape {shape}")
    B, T, _ = x.shape
    return (x, *positions_and_mask(B, T, block_size, cache, attention_mask, device=x.device))


def check_token_ids(idx, vocab_size: int, name: str = "idx") -> torch.Tensor:
    """``idx`` as int64 (what ``nn.Embedding`` wants) if it is a 2-D (B, T) tensor of integer
    ids in [0, vocab_size); else an error naming what is wrong. A float tensor is refused,
    not rounded: ids 1.7 and 2.2 are no tokens.

    >>> check_token_ids(torch.tensor([[1.0, 2.0]]), 5)
    Traceback (most recent call last):
    ...
    TypeError: idx must hold integer token ids (torch.long), got torch.float32
    """
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"{name} must be a 2-D (B, T) tensor of token ids, got shape {shape}")
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids (torch.long), got {idx.dtype}")
    if idx.numel() and (idx.min() < 0 or idx.max() >= vocab_size):
        raise ValueError(
            f"{name}: token ids must lie in [0, {vocab_size}), got min {int(idx.min())} "
            f"and max {int(idx.max())}"
        )
    return idx.long()
