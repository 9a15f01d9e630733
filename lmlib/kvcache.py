"""The KV cache: every layer's keys and values, kept so that generation does not redo them.

A decoder's key and value for token t depend only on tokens 0..t, so once computed they never
change. Generating token t + 1 then needs only its own query, key and value, plus the cached
keys and values of the prefix: one position of work per step instead of the whole sequence.
Chapter 5 measures the speed-up; `kv_cache_bytes` gives the price in memory.

- `LayerKV`: one layer's preallocated keys and values, filled up to ``length``.
- `KVCache`: one `LayerKV` per layer, with the few operations generation needs: `reorder`
  rows (beam search), `load_prefix` (many prompts sharing one prefix, computed once) and
  `crop` (forget the newest positions). No other module writes a cache's fields.
- `kv_cache_bytes`: 2 (k and v) * layers * kv heads * head size * tokens * bytes.

Shape legend: B batch, nkv key/value heads, hs head size (``head_dim``), T new positions,
S positions so far, P prefix positions.

>>> from lmlib.model import GPT, GPTConfig
>>> model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layers=2, n_heads=2, d_model=4))
>>> cache = KVCache.for_model(model, batch_size=1, max_len=8)
>>> _ = model(torch.tensor([[1, 2, 3]]), cache=cache)  # the prompt fills 3 positions
>>> _ = model(torch.tensor([[4]]), cache=cache)  # then one token at a time
>>> cache.length, tuple(cache.layers[0].k.shape)  # (B, nkv, max_len, hs)
(4, (1, 2, 8, 2))
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lmlib.runtime import check_int


class LayerKV:
    """One layer's keys and values, (B, nkv, max_len, hs) each, filled up to ``length``.

    Preallocated: appending writes into place, where ``torch.cat`` would copy the whole
    cache at every step.

    >>> kv = LayerKV(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2))
    >>> k, v = kv.update(torch.ones(1, 1, 3, 2), torch.ones(1, 1, 3, 2))  # a 3-token prompt
    >>> k, v = kv.update(2 * torch.ones(1, 1, 1, 2), 2 * torch.ones(1, 1, 1, 2))  # one more
    >>> kv.length, k[0, 0, :, 0].tolist()
    (4, [1.0, 1.0, 1.0, 2.0])
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor):
        self.k, self.v = k, v  # (B, nkv, max_len, hs), preallocated
        self.length = 0  # positions filled so far

    def update(self, k: torch.Tensor, v: torch.Tensor):
        """Append k, v (B, nkv, T, hs); return every key and value so far, (B, nkv, S, hs)."""
        if (
            k.shape != v.shape
            or k.dim() != 4
            or (k.size(0), k.size(1), k.size(3))
            != (self.k.size(0), self.k.size(1), self.k.size(3))
        ):
            raise ValueError(
                f"k and v must both be (B, nkv, T, hs) = {tuple(self.k.shape[:2])} "
                f"+ (T, {self.k.size(3)}), got {tuple(k.shape)} and "
                f"{tuple(v.shape)}"
            )
        start, end = self.length, self.length + k.size(2)
        if end > self.k.size(2):
            raise ValueError(f"KV cache holds {self.k.size(2)} positions; {end} do not fit")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]  # views, not copies


class KVCache:
    """Every layer's keys and values for the tokens seen so far: ``cache.layers[i]``.

    Keys are cached after RoPE: a key's rotation depends only on its own position, so it
    never changes once computed. The module docstring shows a cache filling up.
    """

    def __init__(self, n_layers: int, batch_size: int, n_kv_heads: int, max_len: int,
                 head_dim: int, device=None, dtype=torch.float32):  # fmt: skip
        for name, value in (("n_layers", n_layers), ("batch_size", batch_size),
                            ("n_kv_heads", n_kv_heads), ("max_len", max_len),
                            ("head_dim", head_dim)):  # fmt: skip
            check_int(value, name, low=1)
        shape = (batch_size, n_kv_heads, max_len, head_dim)

        def zeros():
            return torch.zeros(shape, device=device, dtype=dtype)

        self.layers = [LayerKV(zeros(), zeros()) for _ in range(n_layers)]

    @classmethod
    def for_model(cls, model: nn.Module, batch_size: int, max_len: int) -> KVCache:
        """An empty cache for ``model`` (GPT or Llama), on its device and in its dtype."""
        c = model.config
        p = next(model.parameters())
        return cls(c.n_layers, batch_size, c.n_kv_heads, max_len, c.head_dim, device=p.device,
                   dtype=p.dtype)  # fmt: skip

    @property
    def length(self) -> int:
        """Positions cached so far, the same in every layer (0 for a fresh cache)."""
        return self.layers[0].length

    @property
    def batch_size(self) -> int:
        return self.layers[0].k.size(0)

    @property
    def max_len(self) -> int:
        return self.layers[0].k.size(2)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (new row i = old row index[i]); beam search uses this."""
        index = torch.as_tensor(index)
        if index.dim() != 1 or index.is_floating_point() or index.dtype == torch.bool:
            raise ValueError(f"index must be a 1-D tensor of row numbers, got {index!r:.60}")
        if len(index) and (index.min() < 0 or index.max() >= self.batch_size):
            raise ValueError(f"index must pick rows in [0, {self.batch_size}), got "
                             f"{index.tolist()[:8]}")  # fmt: skip
        for layer in self.layers:
            layer.k, layer.v = layer.k[index], layer.v[index]

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on, as if only the first ``length`` ran.

        The stored numbers stay in place; the next `LayerKV.update` overwrites them.

        >>> cache = KVCache(n_layers=1, batch_size=1, n_kv_heads=1, max_len=4, head_dim=2)
        >>> _ = cache.layers[0].update(torch.ones(1, 1, 3, 2), torch.ones(1, 1, 3, 2))
        >>> cache.crop(1)
        >>> cache.length
        1
        """
        check_int(length, "length")
        if not 0 <= length <= self.length:
            raise ValueError(f"length must lie in [0, {self.length}] (positions cached), "
                             f"got {length}")  # fmt: skip
        for layer in self.layers:
            layer.length = length

    def load_prefix(self, prefix: KVCache) -> None:
        """Copy ``prefix``'s keys and values into the first positions of every row.

        ``prefix`` has batch size 1 (shared by every row: a prompt prefix computed once) or
        this cache's batch size (row by row). Afterwards this cache holds exactly the
        prefix's positions, so the next tokens continue after it.

        >>> prefix = KVCache(n_layers=1, batch_size=1, n_kv_heads=1, max_len=2, head_dim=1)
        >>> _ = prefix.layers[0].update(torch.ones(1, 1, 2, 1), 2 * torch.ones(1, 1, 2, 1))
        >>> cache = KVCache(n_layers=1, batch_size=3, n_kv_heads=1, max_len=5, head_dim=1)
        >>> cache.load_prefix(prefix)
        >>> cache.length, cache.layers[0].v[:, 0, :, 0].tolist()  # (B, max_len)
        (2, [[2.0, 2.0, 0.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0, 0.0], [2.0, 2.0, 0.0, 0.0, 0.0]])
        """
        if not isinstance(prefix, KVCache):
            raise TypeError(f"prefix must be a KVCache, got {type(prefix).__name__}")
        if len(prefix.layers) != len(self.layers):
            raise ValueError(f"prefix has {len(prefix.layers)} layers, this cache "
                             f"{len(self.layers)}")  # fmt: skip
        ours, theirs = self.layers[0].k.shape, prefix.layers[0].k.shape  # (B, nkv, len, hs)
        if (ours[1], ours[3]) != (theirs[1], theirs[3]):
            raise ValueError(f"prefix has {theirs[1]} kv heads of head_dim {theirs[3]}, this "
                             f"cache {ours[1]} of head_dim {ours[3]}")  # fmt: skip
        if prefix.batch_size not in (1, self.batch_size):
            raise ValueError(f"prefix batch size must be 1 or {self.batch_size} (this "
                             f"cache's), got {prefix.batch_size}")  # fmt: skip
        P = prefix.length
        if P > self.max_len:
            raise ValueError(f"prefix of {P} positions is longer than this cache's max_len "
                             f"{self.max_len}")  # fmt: skip
        for layer, src in zip(self.layers, prefix.layers, strict=True):
            layer.k[:, :, :P] = src.k[:, :, :P]  # (1 or B, nkv, P, hs), broadcast to B rows
            layer.v[:, :, :P] = src.v[:, :, :P]
            layer.length = P


def kv_cache_bytes(config, batch_size: int, seq_len: int, dtype=torch.float32) -> int:
    """Memory of a full KV cache: 2 (k and v) * n_layers * nkv * hs * seq_len * B * bytes.

    SmolLM2-135M (30 layers, 3 kv heads of size 64) stores 2 * 30 * 3 * 64 = 11,520 numbers
    per token, 46,080 bytes in float32; 1024 tokens take 47,185,920 bytes (45 MiB).

    >>> from lmlib.model import LlamaConfig
    >>> kv_cache_bytes(LlamaConfig(), batch_size=1, seq_len=1024)
    47185920
    >>> kv_cache_bytes(LlamaConfig(), batch_size=1, seq_len=1024, dtype=torch.bfloat16)
    23592960
    """
    check_int(batch_size, "batch_size", low=0)
    check_int(seq_len, "seq_len", low=0)
    bytes_per_element = torch.empty((), dtype=dtype).element_size()
    c = config
    return 2 * c.n_layers * c.n_kv_heads * c.head_dim * seq_len * batch_size * bytes_per_element
