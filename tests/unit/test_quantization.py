"""Quantization and the memory and time it saves (lmlib.quantization).

References: torch's own per-channel fake quantization for `quantize`, ``nn.Linear`` for
`Int8Linear`, PyTorch's dynamic int8 layers; hand-checkable byte counts, and the errors a
wrong call must raise. One slow test quantizes the real SmolLM2.
"""

import copy

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.model import Llama, LlamaConfig, column_major_linears
from lmlib.perplexity import sliding_window_perplexity
from lmlib.quantization import (
    Int8Linear,
    dequantize,
    dynamic_int8,
    model_bytes,
    quantize,
    quantize_linears,
    serialized_bytes,
    time_forward,
)

V = 11


def test_quantize_hand_checked_and_matches_torch_fake_quantization():
    w = torch.tensor([[0.5, -1.0, 0.25], [2.0, 0.0, -2.0]])
    q, scale = quantize(w)
    assert q.dtype == torch.int8 and scale.shape == (2, 1)
    assert q.tolist() == [[64, -127, 32], [127, 0, -127]]  # 0.5 * 127 = 63.5 rounds to even
    torch.manual_seed(0)
    w = torch.randn(64, 48)
    q, scale = quantize(w)
    ref = torch.fake_quantize_per_channel_affine(
        w, scale[:, 0], torch.zeros(64, dtype=torch.int32), 0, -127, 127
    )
    assert torch.equal(dequantize(q, scale), ref)


@settings(max_examples=40, deadline=None)
@given(
    out=st.integers(1, 6),
    groups=st.integers(1, 4),
    g=st.sampled_from([1, 2, 8]),
    bits=st.integers(2, 8),
    seed=st.integers(0, 1000),
)
def test_round_trip_error_is_at_most_half_a_step(out, groups, g, bits, seed):
    w = torch.randn(out, groups * g, generator=torch.Generator().manual_seed(seed)) * 3
    q, scale = quantize(w, bits=bits, group_size=g)
    qmax = 2 ** (bits - 1) - 1
    assert scale.shape == (out, groups)
    assert q.abs().max() <= qmax
    err = (dequantize(q, scale) - w).abs().reshape(out, groups, g)
    assert (err <= scale[..., None] / 2 + 1e-6).all()
    # the largest weight of every group is represented exactly (up to float rounding)
    big = w.reshape(out, groups, g).abs().amax(-1)
    assert torch.allclose(q.reshape(out, groups, g).abs().amax(-1).float() * scale, big)


def test_smaller_groups_follow_an_outlier_better():
    torch.manual_seed(0)
    w = torch.randn(16, 256) * 0.02
    w[:, 0] = 1.0  # one outlier column, as in real LLM weights
    errors = []
    for group_size in (None, 64, 16):
        q, scale = quantize(w, bits=4, group_size=group_size)
        errors.append((dequantize(q, scale) - w).pow(2).mean().item())
    assert errors[0] > errors[1] > errors[2]
    per_tensor = quantize(w.reshape(1, -1), bits=4)  # one scale for the whole matrix
    assert (dequantize(*per_tensor).reshape_as(w) - w).pow(2).mean() >= errors[0]


def test_zero_rows_quantize_to_zero():
    q, scale = quantize(torch.zeros(2, 4))
    assert q.eq(0).all() and scale.eq(0).all()
    assert dequantize(q, scale).eq(0).all()


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((torch.ones(4),), ValueError, "2-D"),
        ((torch.ones(2, 4, dtype=torch.long),), TypeError, "floating-point"),
        (([[1.0, 2.0]],), TypeError, "floating-point"),
        ((torch.ones(2, 4), 1), ValueError, "bits"),
        ((torch.ones(2, 4), 9), ValueError, "bits"),
        ((torch.ones(2, 4), 8, 3), ValueError, "group_size"),
        ((torch.ones(2, 4), 8, 0), ValueError, "group_size"),
    ],
)
def test_quantize_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        quantize(*args)


def test_dequantize_rejects_mismatched_shapes():
    q, scale = quantize(torch.randn(3, 8), group_size=4)
    with pytest.raises(ValueError, match="scale"):
        dequantize(q, scale[:2])
    with pytest.raises(ValueError, match="groups"):
        dequantize(q, torch.ones(3, 3))


def test_int8_linear_is_close_to_the_float_layer_and_four_times_smaller():
    torch.manual_seed(0)
    layer = nn.Linear(256, 64)
    q = Int8Linear(layer)
    x = torch.randn(5, 256)
    rel = (q(x) - layer(x)).norm() / layer(x).norm()
    assert rel < 0.01
    assert torch.equal(q.bias, layer.bias) and not q.bias.requires_grad
    # 64 * 256 int8 weights + 64 float32 scales + 64 float32 biases
    assert model_bytes(q) == 64 * 256 + 64 * 4 + 64 * 4
    assert model_bytes(layer) == (64 * 256 + 64) * 4
    assert "256 -> 64, 8-bit" in repr(q)
    no_bias = Int8Linear(nn.Linear(8, 4, bias=False))
    assert no_bias.bias is None and no_bias(torch.randn(2, 8)).shape == (2, 4)


@pytest.mark.parametrize("bits, group", [(8, None), (4, 32)])
def test_int8_linear_of_a_column_major_weight_equals_the_row_major_one(bits, group):
    """`Llama.from_weights` stores its weights column-major; the packing kernels read rows."""
    torch.manual_seed(0)
    layer = nn.Linear(64, 32)
    cols = column_major_linears(copy.deepcopy(layer))
    kwargs = {"bits": bits} if group is None else {"bits": bits, "group_size": group}
    x = torch.randn(5, 64)
    assert torch.equal(Int8Linear(cols, **kwargs)(x), Int8Linear(layer, **kwargs)(x))


def test_int8_linear_runs_in_bfloat16():
    layer = nn.Linear(16, 4)
    out = Int8Linear(layer)(torch.randn(3, 16, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16


def test_quantize_linears_keeps_the_tied_head_and_barely_changes_the_logits():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, block_size=16, n_layers=2, n_heads=4, n_kv_heads=2, d_model=32,
                      hidden=64)  # fmt: skip
    model = Llama(cfg).eval()
    idx = torch.randint(0, V, (2, 10))
    before, size = model(idx).logits, model_bytes(model)
    n = quantize_linears(model)
    assert n == 2 * 7  # q, k, v, o, gate, up, down in each block; lm_head skipped
    assert isinstance(model.lm_head, nn.Linear) and model.lm_head.weight is model.embed.weight
    assert isinstance(model.blocks[0].attn.q_proj, Int8Linear)
    assert (model(idx).logits - before).abs().max() < 0.05
    assert model_bytes(model) < size
    assert quantize_linears(model) == 0  # nothing left to quantize


def test_dynamic_int8_copies_the_model_and_stays_close():
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    x = torch.randn(4, 64)
    q = dynamic_int8(model, skip=("2",))  # the last layer ("2") stays float
    assert type(model[0]) is nn.Linear  # the original is untouched
    assert isinstance(q[0], DynamicLinear) and type(q[2]) is nn.Linear
    rel = (q(x) - model(x)).norm() / model(x).norm()
    assert rel < 0.05
    assert serialized_bytes(q) < serialized_bytes(model)


def test_time_forward_is_positive_and_calls_the_model():
    calls = []
    model = nn.Linear(4, 4)
    model.register_forward_hook(lambda *args: calls.append(1))
    assert time_forward(model, torch.randn(2, 4), repeats=3) > 0
    assert len(calls) == 4  # one warm-up call, three timed


def test_model_bytes_counts_a_tied_weight_once(tiny_gpt):
    model = tiny_gpt
    assert model.lm_head.weight is model.transformer.wte.weight
    n_unique = sum(p.numel() for p in model.parameters())  # parameters() skips the tie
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert model_bytes(model) == 4 * n_unique + buffers
    assert model_bytes(model.to(torch.bfloat16)) == 2 * n_unique + buffers // 2


def test_serialized_bytes_is_the_weights_plus_a_little():
    model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256))
    weights = model_bytes(model)
    assert weights <= serialized_bytes(model) <= weights * 1.05 + 4096


def test_quantize_linears_counts_and_skips_by_whole_dotted_names():
    net = nn.ModuleDict({"attn": nn.ModuleDict({"c_proj": nn.Linear(4, 4)}),
                         "mlp": nn.ModuleDict({"c_proj": nn.Linear(4, 4)}),
                         "xattn": nn.Linear(4, 4)})  # fmt: skip
    assert quantize_linears(copy.deepcopy(net), skip=("attn.c_proj",)) == 2  # mlp's, xattn
    assert quantize_linears(copy.deepcopy(net), skip=("attn",)) == 3  # "xattn" is not "attn"
    assert quantize_linears(net, skip=()) == 3
    assert all(isinstance(m, Int8Linear) for m in (net.attn.c_proj, net.mlp.c_proj, net.xattn))


@pytest.mark.slow
@torch.no_grad()
def test_smollm2_int8_weights_take_under_half_the_memory_and_keep_the_perplexity():
    from lmlib.pretrained import load_smollm2

    model, tok = load_smollm2()
    assert model_bytes(model) == pytest.approx(134_515_008 * 4, rel=1e-3)
    int8 = copy.deepcopy(model)
    assert quantize_linears(int8) == 30 * 7  # q, k, v, o, gate, up, down in 30 blocks
    assert model_bytes(int8) < 0.45 * model_bytes(model)
    ids = tok("The capital of France is Paris. It is known for the Eiffel Tower and the "
              "Louvre.", return_tensors="pt").input_ids[0]  # fmt: skip
    before, after = (sliding_window_perplexity(m, ids, len(ids)) for m in (model, int8))
    print(f"perplexity {before:.2f}, int8 weights: x{after / before:.3f}")
    assert 0.9 < after / before < 1.1
