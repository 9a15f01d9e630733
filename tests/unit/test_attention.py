"""lmlib.attention against real references: PyTorch's fused attention, nn.MultiheadAttention,
nn.LayerNorm, F.gelu, and Hugging Face Llama's RMSNorm, MLP and rotary embeddings."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.attention import (
    GELUMLP,
    LayerNorm,
    MultiHeadAttention,
    RMSNorm,
    SwiGLU,
    apply_rope,
    attend,
    causal_mask,
    gelu_tanh,
    layer_norm,
    rope_cache,
    scaled_dot_product_attention,
    sinusoidal_positions,
    softmax,
)

ATOL = 1e-5


def hf_llama():
    """Hugging Face's Llama modules; without ``transformers`` the calling test skips."""
    return pytest.importorskip("transformers.models.llama.modeling_llama")


def qkv(B=2, nh=3, T=7, S=7, hs=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, nh, T, hs, generator=g),
        torch.randn(B, nh, S, hs, generator=g),
        torch.randn(B, nh, S, hs, generator=g),
    )


def random_mask(B, nh, T, S, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(B, nh, T, S, generator=g) < 0.5
    mask[..., 0] = True  # a fully masked row has no softmax; keep key 0 for every query
    return mask


# --- softmax and the explicit attention --------------------------------------------------


def test_softmax_matches_torch_and_is_stable():
    x = torch.tensor([[1000.0, 1001.0], [-5.0, 2.0]])
    assert torch.isinf(torch.exp(x[0])).all()  # the naive formula would divide inf by inf
    ours = softmax(x)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, torch.softmax(x, dim=-1), atol=ATOL, rtol=0)
    y = torch.randn(4, 5, 6) * 50
    torch.testing.assert_close(softmax(y, dim=1), torch.softmax(y, dim=1), atol=ATOL, rtol=0)


def test_causal_mask_is_lower_triangle():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    assert m[2, 2] and m[2, 0] and not m[0, 1]
    assert m.sum() == 4 * 5 // 2


@pytest.mark.parametrize("kind", ["none", "causal", "random"])
def test_sdpa_matches_torch_fused(kind):
    q, k, v = qkv(T=6, S=6) if kind == "causal" else qkv(T=5, S=9)
    T, S = q.size(2), k.size(2)
    mask = {"none": None, "causal": causal_mask(T), "random": random_mask(2, 3, T, S)}[kind]
    out, w = scaled_dot_product_attention(q, k, v, mask, return_weights=True)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # bool: True = allowed too
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    assert out.shape == q.shape and w.shape == (2, 3, T, S)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, T), atol=ATOL, rtol=0)
    if mask is not None:
        assert (w.masked_select(~mask.expand_as(w)) == 0).all()  # exactly zero, not tiny


def test_sdpa_returns_only_out_by_default():
    q, k, v = qkv()
    assert isinstance(scaled_dot_product_attention(q, k, v), torch.Tensor)


def test_sdpa_bad_inputs():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"rank 4.*got q \(3, 7, 8\), k \(2, 3, 7, 8\)"):
        scaled_dot_product_attention(q[0], k, v)
    with pytest.raises(ValueError, match="head sizes differ"):
        scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="same length S"):
        scaled_dot_product_attention(q, k, v[:, :, :3])
    with pytest.raises(TypeError, match="floating point"):
        scaled_dot_product_attention(q.long(), k, v)


def grouped_attention_by_hand(q, k, v, mask):
    """Reference for GQA: query head h reads k/v head h // g, one head at a time."""
    nh, nkv, hs = q.size(1), k.size(1), q.size(-1)
    out = torch.empty_like(q)
    for h in range(nh):
        j = h // (nh // nkv)
        scores = q[:, h] @ k[:, j].transpose(-2, -1) / math.sqrt(hs)  # (B, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, 0], float("-inf"))  # mask (B or 1, 1, T, S)
        out[:, h] = torch.softmax(scores, dim=-1) @ v[:, j]  # (B, T, hs)
    return out


@pytest.mark.parametrize("nkv", [1, 2, 4])
@pytest.mark.parametrize("case", ["causal", "cache and padding", "one new token"])
def test_attend_fused_and_teaching_equal_grouped_attention_by_hand(nkv, case):
    """What the models call: 4 query heads share nkv k/v heads, under each kind of mask."""
    T, S = {"causal": (5, 5), "cache and padding": (3, 7), "one new token": (1, 6)}[case]
    q, _, _ = qkv(B=2, nh=4, T=T, S=S, hs=8)
    _, k, v = qkv(B=2, nh=nkv, T=T, S=S, hs=8, seed=1)
    mask = None  # attend's default: causal, or a single new token that sees everything
    if case == "cache and padding":  # 4 cached keys; row 1 starts with 2 padding positions
        query, key = torch.arange(S - T, S)[:, None], torch.arange(S)[None, :]  # (T, 1), (1, S)
        real = torch.tensor([[True] * S, [False] * 2 + [True] * (S - 2)])  # (B, S)
        mask = (key <= query) & real[:, None, None, :]  # (B, 1, T, S)
    want = grouped_attention_by_hand(q, k, v, causal_mask(T)[None, None] if case == "causal"
                                     else mask)  # fmt: skip
    fused, none = attend(q, k, v, mask)
    teaching, weights = attend(q, k, v, mask, return_weights=True)
    assert none is None and weights.shape == (2, 4, T, S)
    torch.testing.assert_close(fused, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(teaching, want, atol=ATOL, rtol=0)


# --- multi-head attention ------------------------------------------------------------------


def torch_mha_like(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(ours.d_model, ours.n_heads, batch_first=True)
    with torch.no_grad():
        # PyTorch packs the three projections into one (3C, C) matrix, in q, k, v order.
        ref.in_proj_weight.copy_(
            torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
        )
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref


@pytest.mark.parametrize("causal", [False, True])
def test_mha_matches_torch_multihead_attention(causal):
    torch.manual_seed(0)
    ours = MultiHeadAttention(d_model=16, n_heads=4, causal=causal)
    ref = torch_mha_like(ours)
    x = torch.randn(2, 6, 16)
    # nn.MultiheadAttention's bool attn_mask means the opposite: True = NOT allowed.
    attn_mask = ~causal_mask(6) if causal else None
    out, w = ours(x, return_weights=True)
    ref_out, ref_w = ref(x, x, x, attn_mask=attn_mask, average_attn_weights=True)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=0)
    torch.testing.assert_close(w.mean(dim=1), ref_w, atol=ATOL, rtol=0)  # average the heads


def test_mha_uses_three_different_projections():
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=8, n_heads=2)
    weights = [mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight]
    # three separate matrices, not one tensor seen three times, and different in value
    assert len({w.data_ptr() for w in weights}) == 3
    for i in range(3):
        for j in range(i + 1, 3):
            assert (weights[i] - weights[j]).abs().max() > 0.1
    # on real input the queries, keys and values differ token by token
    x = torch.randn(2, 5, 8)
    q, k, v = mha.q_proj(x), mha.k_proj(x), mha.v_proj(x)
    for a, b in ((q, k), (q, v), (k, v)):
        assert (a - b).abs().amax(dim=-1).min() > 1e-3
    # and the layer's output depends on all three: zeroing one projection changes it
    out = mha(x)
    for proj in (mha.q_proj, mha.k_proj, mha.v_proj):
        saved = proj.weight.detach().clone()
        with torch.no_grad():
            proj.weight.zero_()
            changed = mha(x)
            proj.weight.copy_(saved)
        assert not torch.allclose(out, changed, atol=1e-4)


def test_mha_extra_mask_combines_with_causal():
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=8, n_heads=2, causal=True)
    keep_first = torch.zeros(5, 5, dtype=torch.bool)
    keep_first[:, 0] = True  # every query may only see token 0
    _, w = mha(torch.randn(1, 5, 8), mask=keep_first, return_weights=True)
    torch.testing.assert_close(w[..., 0], torch.ones(1, 2, 5))


def test_causal_attention_ignores_the_future():
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=8, n_heads=2, causal=True)
    x = torch.randn(1, 6, 8)
    x2 = x.clone()
    x2[:, 4] = torch.randn(8)  # change token 4 only
    a, b = mha(x), mha(x2)
    assert torch.equal(a[:, :4], b[:, :4])  # earlier outputs identical, bit for bit
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_mha_bad_head_count():
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by n_heads \(4\)"):
        MultiHeadAttention(d_model=10, n_heads=4)


# --- positions -----------------------------------------------------------------------------


def test_sinusoidal_positions():
    pe = sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16)
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0] * 8))  # sin 0 = 0, cos 0 = 1
    p, i = 7, 3  # a hand-checkable entry from the formula
    assert math.isclose(pe[p, 2 * i].item(), math.sin(p / 10000 ** (2 * i / 16)), abs_tol=1e-6)
    assert math.isclose(pe[p, 2 * i + 1].item(), math.cos(p / 10000 ** (2 * i / 16)), abs_tol=1e-6)


def hf_llama_config(**kw):
    return pytest.importorskip("transformers").LlamaConfig(
        hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=4, **kw
    )


def test_rope_matches_hugging_face_llama():
    B, nh, T, hs = 2, 4, 10, 8
    llama, cfg = hf_llama(), hf_llama_config(max_position_embeddings=64)
    q, k, _ = qkv(B, nh, T, T, hs)
    position_ids = torch.arange(3, 3 + T)[None].expand(B, T)  # an offset of 3 positions
    ref_cos, ref_sin = llama.LlamaRotaryEmbedding(cfg)(q, position_ids)  # (B, T, hs)
    ref_q, ref_k = llama.apply_rotary_pos_emb(q, k, ref_cos, ref_sin)
    cos, sin = rope_cache(hs, 3 + T)
    cos, sin = cos[3:], sin[3:]  # slice the cache for the offset
    torch.testing.assert_close(cos, ref_cos[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(apply_rope(q, cos, sin), ref_q, atol=ATOL, rtol=0)
    torch.testing.assert_close(apply_rope(k, cos, sin), ref_k, atol=ATOL, rtol=0)


def test_rope_preserves_norm():
    q, _, _ = qkv(hs=16)
    cos, sin = rope_cache(16, q.size(2))
    torch.testing.assert_close(apply_rope(q, cos, sin).norm(dim=-1), q.norm(dim=-1))


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    m=st.integers(0, 40),
    n=st.integers(0, 40),
    shift=st.integers(0, 40),
    seed=st.integers(0, 2**16),
)
def test_rope_dot_product_depends_only_on_relative_position(m, n, shift, seed):
    hs = 16
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 1, 1, 1, hs, generator=g)  # each (1, 1, 1, hs)
    q, k = q.double(), k.double()  # float64 so that the tolerance tests the maths, not rounding
    cos, sin = rope_cache(hs, 100, dtype=torch.float64)

    def score(pq, pk):
        rq = apply_rope(q, cos[pq : pq + 1], sin[pq : pq + 1])  # q at position pq
        rk = apply_rope(k, cos[pk : pk + 1], sin[pk : pk + 1])  # k at position pk
        return (rq * rk).sum().item()

    assert math.isclose(score(m, n), score(m + shift, n + shift), abs_tol=1e-9)
    if m != n:  # and the sign of m - n matters: a RoPE that did nothing would pass the above
        assert not math.isclose(score(m, n), score(n, m), abs_tol=1e-6)


# --- norms and feed-forward networks -------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_matches_torch(bias):
    torch.manual_seed(0)
    ours, ref = LayerNorm(12, bias=bias), nn.LayerNorm(12, bias=bias)
    with torch.no_grad():
        ours.weight.normal_()
        ref.weight.copy_(ours.weight)
        if bias:
            ours.bias.normal_()
            ref.bias.copy_(ours.bias)
    assert (ours.bias is None) == (not bias)
    x = torch.randn(3, 5, 12) * 4 + 2
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=0)
    # the formula written out op by op, which the module computes with the fused kernel
    by_hand = layer_norm(x, ours.weight, ours.bias, ours.eps)
    torch.testing.assert_close(by_hand, ref(x), atol=ATOL, rtol=0)
    # and the same gradients, for the weights and the input
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    g = torch.randn(3, 5, 12)
    (ours(xs[0]) * g).sum().backward()
    (layer_norm(xs[1], ref.weight, ref.bias, ref.eps) * g).sum().backward()
    torch.testing.assert_close(xs[0].grad, xs[1].grad, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=1e-4, rtol=0)


def test_rmsnorm_matches_formula_and_llama():
    torch.manual_seed(0)
    ours, ref = RMSNorm(32), hf_llama().LlamaRMSNorm(32, eps=1e-6)
    with torch.no_grad():
        ours.weight.normal_()
        ref.weight.copy_(ours.weight)
    x = torch.randn(2, 5, 32)
    direct = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6) * ours.weight
    torch.testing.assert_close(ours(x), direct, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=0)
    xh = x.to(torch.bfloat16)  # low precision in, computed in float32, cast back like Llama's
    torch.testing.assert_close(ours.to(torch.bfloat16)(xh), ref.to(torch.bfloat16)(xh))


def test_gelu_mlp_matches_torch_gelu_tanh():
    torch.manual_seed(0)
    mlp = GELUMLP(16, 64)
    x = torch.randn(2, 5, 16)
    ref = mlp.c_proj(F.gelu(mlp.c_fc(x), approximate="tanh"))
    torch.testing.assert_close(mlp(x), ref, atol=ATOL, rtol=0)
    # the formula written out, which the module computes with PyTorch's fused kernel
    torch.testing.assert_close(mlp(x), mlp.c_proj(gelu_tanh(mlp.c_fc(x))), atol=ATOL, rtol=0)
    z = torch.linspace(-8, 8, 1001)
    torch.testing.assert_close(gelu_tanh(z), F.gelu(z, approximate="tanh"), atol=ATOL, rtol=0)
    assert abs(gelu_tanh(z) - F.gelu(z)).max() > 1e-4  # and it is not the exact (erf) GELU


def test_swiglu_matches_llama_mlp():
    torch.manual_seed(0)
    cfg = hf_llama_config()
    ref = hf_llama().LlamaMLP(cfg)
    ours = SwiGLU(cfg.hidden_size, cfg.intermediate_size)
    ours.load_state_dict(ref.state_dict())  # same parameter names, so this just works
    x = torch.randn(2, 5, cfg.hidden_size)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=0)
