"""lmlib.kvcache: a cache filled by any route (shared prefix, crop, reorder) computes exactly
what running the whole sequence computes; its memory is kv_cache_bytes'."""

import pytest
import torch

from lmlib.kvcache import KVCache, LayerKV, kv_cache_bytes
from lmlib.model import GPTConfig, LlamaConfig

V = 99  # conftest's tiny models


def random_ids(B, T, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def filled(model, ids, max_len=None):
    """A cache for ``model`` after running ``ids`` (B, T)."""
    cache = KVCache.for_model(model, ids.size(0), max_len or ids.size(1))
    model(ids, cache=cache)
    return cache


def assert_same_keys_and_values(a: KVCache, b: KVCache, atol=1e-6):
    assert a.length == b.length
    for x, y in zip(a.layers, b.layers, strict=True):
        n = a.length
        assert torch.allclose(x.k[:, :, :n], y.k[:, :, :n], atol=atol)
        assert torch.allclose(x.v[:, :, :n], y.v[:, :, :n], atol=atol)


@torch.no_grad()
def test_load_prefix_equals_running_the_prefix_in_every_row(tiny_model):
    prefix_ids, rest = random_ids(1, 6), random_ids(3, 5, seed=2)
    cache = KVCache.for_model(tiny_model, batch_size=3, max_len=11)
    cache.load_prefix(filled(tiny_model, prefix_ids))  # (1, ...) broadcast to 3 rows
    assert cache.length == 6
    # Exactly the keys and values of a cache that ran the prefix in every row ...
    assert_same_keys_and_values(cache, filled(tiny_model, prefix_ids.expand(3, -1)))
    # ... so the rest of each row computes what the whole sequence does.
    got = tiny_model(rest, cache=cache).logits
    want = tiny_model(torch.cat([prefix_ids.expand(3, -1), rest], dim=1)).logits[:, 6:]
    assert (got - want).abs().max().item() <= 1e-5
    assert cache.length == 11


@torch.no_grad()
def test_load_prefix_of_the_same_batch_size_copies_row_by_row(tiny_model):
    prefix_ids = random_ids(2, 4)  # a different prefix in each row
    prefix = filled(tiny_model, prefix_ids, max_len=7)  # a longer cache: only 4 are copied
    cache = KVCache.for_model(tiny_model, batch_size=2, max_len=9)
    cache.load_prefix(prefix)
    assert_same_keys_and_values(cache, prefix)
    rest = random_ids(2, 3, seed=3)
    got = tiny_model(rest, cache=cache).logits
    want = tiny_model(torch.cat([prefix_ids, rest], dim=1)).logits[:, 4:]
    assert (got - want).abs().max().item() <= 1e-5


@torch.no_grad()
def test_load_prefix_replaces_what_the_cache_held(tiny_model):
    cache = filled(tiny_model, random_ids(1, 8, seed=4), max_len=10)
    prefix_ids = random_ids(1, 3)
    cache.load_prefix(filled(tiny_model, prefix_ids))
    assert cache.length == 3
    assert_same_keys_and_values(cache, filled(tiny_model, prefix_ids))


def small(n_layers=2, batch_size=3, n_kv_heads=2, max_len=8, head_dim=4, length=0):
    cache = KVCache(n_layers, batch_size, n_kv_heads, max_len, head_dim)
    for layer in cache.layers:
        layer.update(*2 * [torch.ones(batch_size, n_kv_heads, length, head_dim)])
    return cache


@pytest.mark.parametrize(
    "prefix, match",
    [
        (small(n_layers=3, batch_size=1), "prefix has 3 layers, this cache 2"),
        (small(n_kv_heads=1, batch_size=1), "prefix has 1 kv heads of head_dim 4, this cache 2"),
        (small(head_dim=8, batch_size=1), "head_dim 8, this cache 2 of head_dim 4"),
        (small(batch_size=2), "prefix batch size must be 1 or 3 .*got 2"),
        (small(max_len=12, length=9, batch_size=1), "9 positions is longer than .*max_len 8"),
    ],
)
def test_load_prefix_errors_name_the_mismatch(prefix, match):
    with pytest.raises(ValueError, match=match):
        small().load_prefix(prefix)


def test_load_prefix_needs_a_cache():
    with pytest.raises(TypeError, match="prefix must be a KVCache, got Tensor"):
        small().load_prefix(torch.zeros(1, 2, 8, 4))


@torch.no_grad()
def test_crop_forgets_the_newest_positions(tiny_model):
    ids = random_ids(2, 9)
    cache = filled(tiny_model, ids[:, :7], max_len=9)
    cache.crop(4)
    assert cache.length == 4
    assert_same_keys_and_values(cache, filled(tiny_model, ids[:, :4]))
    got = tiny_model(ids[:, 4:], cache=cache).logits  # the cropped positions, recomputed
    assert (got - tiny_model(ids).logits[:, 4:]).abs().max().item() <= 1e-5
    for bad in (-1, 10):
        with pytest.raises(ValueError, match=rf"length must lie in \[0, 9\].*got {bad}"):
            cache.crop(bad)


@torch.no_grad()
def test_reorder_moves_each_row_with_its_keys_and_values(tiny_model):
    ids = random_ids(3, 5)
    cache = filled(tiny_model, ids, max_len=6)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert_same_keys_and_values(cache, filled(tiny_model, ids[[2, 2, 0]]))
    nxt = random_ids(3, 1, seed=5)
    got = tiny_model(nxt, cache=cache).logits
    want = tiny_model(torch.cat([ids[[2, 2, 0]], nxt], dim=1)).logits[:, -1:]
    assert (got - want).abs().max().item() <= 1e-5


def test_a_full_layer_refuses_more_positions():
    kv = LayerKV(torch.zeros(1, 1, 2, 1), torch.zeros(1, 1, 2, 1))
    kv.update(torch.ones(1, 1, 2, 1), torch.ones(1, 1, 2, 1))
    with pytest.raises(ValueError, match="holds 2 positions; 3 do not fit"):
        kv.update(torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1))


def test_kv_cache_bytes_is_the_memory_of_a_filled_cache(tiny_model):
    cache = KVCache.for_model(tiny_model, batch_size=3, max_len=16)
    stored = sum(t.numel() * t.element_size() for kv in cache.layers for t in (kv.k, kv.v))
    assert kv_cache_bytes(tiny_model.config, batch_size=3, seq_len=16) == stored
    # GPT-2 small: 2 * 12 layers * 768 channels * 4 bytes = 73,728 bytes per token.
    assert kv_cache_bytes(GPTConfig(), batch_size=1, seq_len=1) == 73_728
    # SmolLM2-135M: 2 * 30 layers * 3 kv heads * 64 * 2 bytes (bf16) = 23,040 per token.
    assert kv_cache_bytes(LlamaConfig(), 1, 1, dtype=torch.bfloat16) == 23_040
