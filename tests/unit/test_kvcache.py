"""lmlib.kvcache: a cache filled by any route (shared prefix, crop, reorder) computes exactly
what running the whole sequence computes; its memory is kv_cache_bytes'."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.generate import generate, left_pad
from lmlib.kvcache import KVCache, LayerKV, kv_cache_bytes, length_groups, prefill
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


# --------------------------------------------------------------------------------------------
# prefill: prompts of different lengths grouped by length, and length_groups


def group_cost(lengths, groups, pass_cost):
    return sum(len(g) * max(lengths[i] for i in g) + pass_cost for g in groups)


def test_length_groups_by_hand():
    # 4 short and 2 long prompts: padding the short ones to 300 would cost 4 x 255
    # positions, far more than a second pass of 32
    lengths = [45, 300, 40, 290, 44, 41]
    assert length_groups(lengths, pass_cost=32) == [[2, 5, 4, 0], [3, 1]]
    # one padded pass: 6 x 300 + 32 = 1832; two groups: 4 x 45 + 32 + 2 x 300 + 32 = 844
    assert group_cost(lengths, [[2, 5, 4, 0], [3, 1]], 32) == 844
    assert length_groups(lengths, pass_cost=math.inf) == [[2, 5, 4, 0, 3, 1]]
    assert length_groups([7, 7, 7], pass_cost=0) in ([[0], [1], [2]], [[0, 1, 2]], [[0, 1], [2]],
                                                     [[0], [1, 2]])  # fmt: skip
    assert length_groups([], pass_cost=32) == []


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=8), st.integers(0, 100))
def test_length_groups_is_the_cheapest_split_into_runs_of_sorted_rows(lengths, pass_cost):
    groups = length_groups(lengths, pass_cost)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))  # a partition
    # Brute force: every split of the sorted rows into consecutive runs (2^(n-1) of them).
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = math.inf
    for cuts in itertools.product([False, True], repeat=len(order) - 1):
        runs, run = [], [order[0]]
        for i, cut in zip(order[1:], cuts, strict=True):
            if cut:
                runs.append(run)
                run = []
            run.append(i)
        best = min(best, group_cost(lengths, [*runs, run], pass_cost))
    assert group_cost(lengths, groups, pass_cost) == best
    assert best <= group_cost(lengths, [list(range(len(lengths)))], pass_cost)  # one pass


@pytest.mark.parametrize(
    ("lengths", "pass_cost", "match"),
    [([3, -1], 32, "ints >= 0"), ([3, 2.5], 32, "ints >= 0"), ([3], -1, "pass_cost"),
     ([3], math.nan, "pass_cost")],
)  # fmt: skip
def test_length_groups_refuses_bad_input(lengths, pass_cost, match):
    with pytest.raises(ValueError, match=match):
        length_groups(lengths, pass_cost)


@torch.no_grad()
def test_prefill_in_length_groups_equals_one_padded_pass(tiny_model):
    """Prompts of 2, 3, 14 and 15 tokens, and one repeated: grouped by length (pass cost 0:
    every group pays only its own padding), each row gets the logits and the keys and values
    of one padded pass, in the same columns; and then generates the same tokens."""
    rows = [random_ids(1, n, seed=n)[0].tolist() for n in (14, 2, 15, 3)]
    rows.append(rows[1])  # a repeated prompt runs once
    idx, mask = left_pad(rows, pad_id=0)  # (5, 15)
    one_logits, one = prefill(tiny_model, idx, mask, 20, pass_cost=math.inf)
    groups = length_groups(mask[:4].sum(1), pass_cost=0)
    assert len(groups) > 1  # really grouped: [[1, 3], [0, 2]] or finer
    logits, cache = prefill(tiny_model, idx, mask, 20, pass_cost=0)
    assert logits.shape == one_logits.shape == (5, V)
    assert (logits - one_logits).abs().max().item() <= 1e-5
    assert cache.length == one.length == 15 and cache.max_len == 20
    real = mask.bool()  # compare the real tokens' keys and values: padding is ignored
    for a, b in zip(cache.layers, one.layers, strict=True):
        for x, y in ((a.k, b.k), (a.v, b.v)):
            got, want = x[:, :, :15].transpose(1, 2)[real], y[:, :, :15].transpose(1, 2)[real]
            assert (got - want).abs().max().item() <= 1e-5
    # each row continues as its prompt alone does
    greedy = dict(max_new_tokens=5, eos_token_id=None)
    batched = generate(tiny_model, idx, attention_mask=mask, **greedy)
    for b, row in enumerate(rows):
        alone = generate(tiny_model, torch.tensor([row]), **greedy)
        assert batched[b, 15:].tolist() == alone[0, len(row) :].tolist()


@torch.no_grad()
def test_prefill_groups_only_on_a_cpu_by_default(tiny_gpt, monkeypatch):
    seen = []
    real_forward = type(tiny_gpt).forward

    def counting(self, idx=None, *args, **kwargs):
        seen.append(tuple(idx.shape))
        return real_forward(self, idx, *args, **kwargs)

    monkeypatch.setattr(type(tiny_gpt), "forward", counting)
    idx, mask = left_pad([[1] * 2, [2] * 3, [3] * 28, [4] * 29], pad_id=0)
    # CPU_PASS_COST 32: one pass costs 4 x 29 + 32 = 148, two 2 x 3 + 2 x 29 + 64 = 128
    prefill(tiny_gpt, idx, mask)
    assert sorted(seen) == [(2, 3), (2, 29)]
    seen.clear()
    prefill(tiny_gpt, idx, mask, pass_cost=math.inf)  # what a GPU does: one padded pass
    assert seen == [(4, 29)]
    seen.clear()
    prefill(tiny_gpt, idx, mask, shrink=False)  # a model whose rows must stay together
    assert seen == [(4, 29)]


def test_write_rows_errors_name_the_mismatch():
    part = small(batch_size=2, max_len=4, length=3)
    for layer in part.layers:
        layer.k.normal_(generator=torch.Generator().manual_seed(0))
    cache = small(batch_size=3, max_len=8)
    with pytest.raises(ValueError, match="one per row of part"):
        cache.write_rows(part, [0], start=0)
    with pytest.raises(ValueError, match=r"rows must lie in \[0, 3\)"):
        cache.write_rows(part, [0, 3], start=0)
    with pytest.raises(ValueError, match="do not fit"):
        cache.write_rows(part, [0, 1], start=6)
    with pytest.raises(ValueError, match="kv heads"):
        cache.write_rows(small(batch_size=2, n_kv_heads=1, length=3), [0, 1], start=0)
    with pytest.raises(TypeError, match="part must be a KVCache"):
        cache.write_rows(part.layers[0], [0, 1], start=0)
    cache.write_rows(part, [2, 0], start=5)
    assert cache.length == 8
    assert torch.equal(cache.layers[1].k[2, :, 5:8], part.layers[1].k[0, :, :3])
    assert torch.equal(cache.layers[1].k[0, :, 5:8], part.layers[1].k[1, :, :3])
    assert cache.layers[1].k[1].abs().sum() == 0  # the other row is untouched
