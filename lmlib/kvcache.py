"""The KV cache: every layer's keys and values, kept so that generation does not redo them.

A decoder's key and value for token t depend only on tokens 0..t, so once computed they never
change. Generating token t + 1 then needs only its own query, key and value, plus the cached
keys and values of the prefix: one position of work per step instead of the whole sequence.
Chapter 5 measures the speed-up; `kv_cache_bytes` gives the price in memory.

- `LayerKV`: one layer's preallocated keys and values, filled up to ``length``.
- `KVCache`: one `LayerKV` per layer, with the few operations generation needs: `reorder`
  rows (beam search), `load_prefix` (many prompts sharing one prefix, computed once) and
  `crop` (forget the newest positions). No other module writes a cache's fields.
- `prefill`: the prompt's pass, which fills a new cache. Prompts of different lengths are
  padded on the left, and padding costs work; on a CPU the rows are grouped by length
  (`length_groups`) and each group runs with only its own padding.
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

import math

import torch
import torch.nn as nn

from lmlib.runtime import check_int

# What one more pass of a model costs on a CPU, in positions of work: SmolLM2-135M, one
# row, 2 AMD EPYC cores, float32: a pass took 71 ms for 1 position and about 2.1 ms more
# for each further one (555 ms for 256, 1,024 ms for 512), so a pass costs as much as
# about 32 positions before it computes any.
CPU_PASS_COST = 32


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

    def write_rows(self, part: KVCache, rows, start: int) -> None:
        """Copy ``part``'s positions into rows ``rows`` of this cache, from ``start`` on.

        `prefill` fills a cache group by group this way. Afterwards this cache holds
        ``start + part.length`` positions: every group must end at the same position, and
        the slots before ``start`` in those rows keep what they held (left padding, masked).

        >>> part = KVCache(n_layers=1, batch_size=1, n_kv_heads=1, max_len=2, head_dim=1)
        >>> _ = part.layers[0].update(torch.ones(1, 1, 2, 1), 2 * torch.ones(1, 1, 2, 1))
        >>> cache = KVCache(n_layers=1, batch_size=2, n_kv_heads=1, max_len=4, head_dim=1)
        >>> cache.write_rows(part, [1], start=1)  # row 1, positions 1 and 2
        >>> cache.length, cache.layers[0].v[:, 0, :, 0].tolist()  # (B, max_len)
        (3, [[0.0, 0.0, 0.0, 0.0], [0.0, 2.0, 2.0, 0.0]])
        """
        if not isinstance(part, KVCache):
            raise TypeError(f"part must be a KVCache, got {type(part).__name__}")
        rows = torch.as_tensor(rows, dtype=torch.long)
        if rows.dim() != 1 or len(rows) != part.batch_size:
            raise ValueError(f"rows must be a 1-D list of {part.batch_size} row numbers (one "
                             f"per row of part), got {rows.tolist()!r:.60}")  # fmt: skip
        if len(rows) and (rows.min() < 0 or rows.max() >= self.batch_size):
            raise ValueError(f"rows must lie in [0, {self.batch_size}), got {rows.tolist()[:8]}")
        ours, theirs = self.layers[0].k.shape, part.layers[0].k.shape
        if len(part.layers) != len(self.layers) or (ours[1], ours[3]) != (theirs[1], theirs[3]):
            raise ValueError(f"part has {len(part.layers)} layers of {theirs[1]} kv heads of "
                             f"head_dim {theirs[3]}, this cache {len(self.layers)} of "
                             f"{ours[1]} of head_dim {ours[3]}")  # fmt: skip
        check_int(start, "start", low=0)
        end = start + part.length
        if end > self.max_len:
            raise ValueError(f"positions {start}..{end - 1} do not fit in this cache's max_len "
                             f"{self.max_len}")  # fmt: skip
        for layer, src in zip(self.layers, part.layers, strict=True):
            layer.k[rows, :, start:end] = src.k[:, :, : part.length]
            layer.v[rows, :, start:end] = src.v[:, :, : part.length]
            layer.length = end


def length_groups(lengths, pass_cost: float) -> list[list[int]]:
    """Split rows of these ``lengths`` into groups, each run as one padded pass, cheapest first.

    A group of n rows padded to its longest row costs n * longest positions, plus
    ``pass_cost`` for the pass itself. Sorted by length, the best groups are runs of
    neighbours, and a dynamic program over the sorted rows finds the split of least total
    cost (one group when ``pass_cost`` is ``math.inf``). Returns row numbers, grouped.

    >>> length_groups([40, 300, 45, 290], pass_cost=32)  # short rows apart from long ones
    [[0, 2], [3, 1]]
    >>> length_groups([40, 300, 45, 290], pass_cost=1000)  # passes dear: one padded pass
    [[0, 2, 3, 1]]
    """
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.tolist()
    if not all(isinstance(n, int) and n >= 0 for n in lengths):
        raise ValueError(f"lengths must be ints >= 0, got {lengths!r:.60}")
    if not pass_cost >= 0:  # also refuses nan
        raise ValueError(f"pass_cost must be >= 0, got {pass_cost}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best, cut = [0.0] + [math.inf] * n, [0] * (n + 1)  # best[j]: the first j sorted rows
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]  # the group i..j-1 is padded to its last row
        for i in range(j):
            cost = best[i] + (j - i) * longest + pass_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def prefill(model: nn.Module, idx: torch.Tensor, attention_mask=None, max_len: int | None = None,
            *, shrink: bool = True, pass_cost: float | None = None):  # fmt: skip
    """The prompt's pass: run ``idx`` (B, T) through ``model`` into a new cache of ``max_len``
    positions (default T). Returns the logits (B, V) of each row's next token, and the cache.

    Two kinds of wasted work are skipped (``shrink``; a model whose rows carry more than
    their tokens passes False):

    - a prompt repeated in several rows (several samples of one prompt) runs once, and its
      keys and values are copied into each of its rows;
    - prompts of different lengths (left padding in ``attention_mask``, 0 = padding) run in
      groups of similar length (`length_groups`), each padded only to its own longest
      prompt, and their keys and values go to the same columns as one padded pass would
      put them. ``pass_cost`` is what a pass costs, in positions: by default
      `CPU_PASS_COST` on a CPU; elsewhere (a GPU computes padded positions in parallel for
      almost nothing) math.inf, one pass.

    Every row then sees exactly what it would in one padded pass: its own tokens at their
    positions (counted from its first real token), and padding that attention ignores.
    """
    B, T = idx.shape
    max_len = T if max_len is None else max_len
    key = idx if attention_mask is None else torch.cat([idx, attention_mask.long()], dim=1)
    distinct, row_of = torch.unique(key, dim=0, return_inverse=True)  # (U, ..), (B,)
    if len(distinct) == B or not shrink:
        first, row_of = torch.arange(B, device=idx.device), None  # nothing repeats
    else:  # one row per distinct prompt: where it first occurs
        order = torch.arange(B, device=idx.device)
        first = torch.full((len(distinct),), B, device=idx.device)
        first = first.scatter_reduce(0, row_of, order, reduce="amin")  # (U,)
    cache = KVCache.for_model(model, len(first), max_len)
    mask = None if attention_mask is None else attention_mask[first]
    groups = [list(range(len(first)))]
    if mask is not None and shrink:
        if pass_cost is None:
            pass_cost = CPU_PASS_COST if idx.device.type == "cpu" else math.inf
        groups = length_groups(mask.sum(dim=1), pass_cost)
    if len(groups) == 1:
        logits = model(idx[first], cache=cache, attention_mask=mask, last_only=True).logits
        logits = logits[:, -1]  # (U, V)
    else:
        logits = None
        for group in groups:
            rows = first[group]
            L = max(1, int(attention_mask[rows].sum(dim=1).max()))  # its longest prompt
            part = KVCache.for_model(model, len(rows), L)
            cut = slice(T - L, T)  # the group's columns: its padding, then its tokens
            out = model(idx[rows, cut], cache=part, attention_mask=attention_mask[rows, cut],
                        last_only=True).logits[:, -1]  # fmt: skip
            if logits is None:
                logits = out.new_empty(len(first), out.size(-1))
            logits[group] = out
            cache.write_rows(part, group, start=T - L)  # the same columns as one pass
    if row_of is not None:
        cache.reorder(row_of)  # (U, ..) -> (B, ..): each row gets its prompt's keys and values
        logits = logits[row_of]
    return logits.float(), cache


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
