"""Our GPT-2 and Llama: against Hugging Face's with the same weights, then on their own.

Tiny random configs (vocab 99, d_model 32, 2 layers, 4 heads; tests/unit/conftest.py) check
every weight mapping in well under a second; only the tests that compare with Hugging Face
need ``transformers`` (they skip one by one without it). One slow test repeats the
comparison with SmolLM2-135M's real weights, including greedy generation.
"""

import copy
import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.convert import gpt_from_hf, llama_from_hf
from lmlib.kvcache import KVCache
from lmlib.model import (
    GPT,
    GPTConfig,
    Llama,
    LlamaConfig,
    column_major_linears,
    count_parameters,
    lm_loss,
)

V, C, L, NH, NKV, T = 99, 32, 2, 4, 2, 16  # conftest's tiny models; T tokens per test row


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def gpt_pair():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(
        vocab_size=V, n_positions=32, n_embd=C, n_layer=L, n_head=NH,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
        attn_implementation="eager",  # returns attention weights
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    return hf, gpt_from_hf(hf).eval()


@pytest.fixture(scope="module")
def llama_pair():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = transformers.LlamaConfig(
        vocab_size=V, hidden_size=C, intermediate_size=64, num_hidden_layers=L,
        num_attention_heads=NH, num_key_value_heads=NKV, max_position_embeddings=32,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
        pad_token_id=0, attn_implementation="eager",
    )  # fmt: skip
    hf = transformers.LlamaForCausalLM(hf_config).eval()
    # Random norm weights too: the default (all ones) would hide a norm mapped to the wrong
    # place, and an untied head would hide a head loaded from the embedding.
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return hf, llama_from_hf(hf).eval()


@pytest.fixture(params=["gpt", "llama"])
def pair(request):
    """(Hugging Face's model, ours with the same weights), for GPT-2 and for Llama."""
    return request.getfixturevalue(f"{request.param}_pair")


def random_ids(B=3, T=T, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def padded(ids, n_pad):
    """ids (B, T) with row b's first n_pad[b] tokens replaced by padding, and its mask."""
    mask = torch.ones_like(ids)
    for b, n in enumerate(n_pad):
        mask[b, :n] = 0
    return ids.masked_fill(mask == 0, 0), mask


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


# --------------------------------------------------------------------------------------------
# The same numbers as Hugging Face's models


@torch.no_grad()
def test_logits_loss_and_attentions_match_hugging_face(pair):
    hf, ours = pair
    ids = random_ids()
    want = hf(ids, labels=ids, output_attentions=True)
    # Hugging Face shifts labels inside; we take targets already shifted, -100 = no target.
    targets = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1)
    got = ours(ids, targets=targets, return_attention=True)

    diff = max_diff(got.logits, want.logits)
    print(f"{type(ours).__name__}: max |logits difference| = {diff:.2e}")
    assert diff <= 1e-5, f"logits differ by {diff:.2e}"
    assert torch.allclose(got.loss, want.loss, atol=1e-6), (got.loss, want.loss)
    assert len(got.attentions) == L
    for layer, (a, b) in enumerate(zip(got.attentions, want.attentions)):
        assert a.shape == (3, NH, T, T)
        diff = max_diff(a, b)
        assert diff <= 1e-5, f"layer {layer} attention weights differ by {diff:.2e}"


@torch.no_grad()
def test_left_padding_matches_hugging_face(pair):
    hf, ours = pair
    ids, mask = padded(random_ids(), [0, 5, 11])
    got = ours(ids, attention_mask=mask).logits
    # Hugging Face's forward takes the positions separately (its generate computes them so).
    want = hf(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    for b, n in enumerate([0, 5, 11]):
        assert max_diff(got[b, n:], want[b, n:]) <= 1e-5


@torch.no_grad()
def test_loads_from_a_state_dict_and_config(pair):
    hf, ours = pair
    load = gpt_from_hf if isinstance(ours, GPT) else llama_from_hf
    again = load(hf.state_dict(), hf.config).eval()
    ids = random_ids()
    assert torch.equal(again(ids).logits, ours(ids).logits)
    with pytest.raises(ValueError, match="hf_config"):
        load(hf.state_dict())


def test_llama_untied_head_is_counted_and_copied(llama_pair):
    hf, ours = llama_pair
    counts = count_parameters(ours)
    assert counts["lm_head"] == V * C
    assert counts["total"] == sum(p.numel() for p in hf.parameters())
    assert ours.embed.weight.data_ptr() != hf.model.embed_tokens.weight.data_ptr()  # a copy


@pytest.mark.parametrize("tie", [True, False])
def test_from_weights_equals_building_then_loading(tiny_llama_config, tie):
    """No random weights drawn, yet the same model: weights (copies), the RoPE buffers
    (not in the state dict), the tie between embedding and output layer, the logits."""
    config = dataclasses.replace(tiny_llama_config, tie_embeddings=tie)
    torch.manual_seed(0)
    built = Llama(config).eval()
    weights = built.state_dict()
    state = torch.get_rng_state()
    fast = Llama.from_weights(config, weights).eval()
    assert torch.equal(torch.get_rng_state(), state)  # drew no random numbers
    assert fast.state_dict().keys() == weights.keys()
    for name, w in fast.state_dict().items():
        assert torch.equal(w, weights[name]) and w.data_ptr() != weights[name].data_ptr()
    for name, b in built.named_buffers():
        assert torch.equal(dict(fast.named_buffers())[name], b)
    assert (fast.lm_head.weight is fast.embed.weight) == tie
    # stored column-major (column_major_linears), tied or not
    assert all(m.weight.stride(0) == 1 for m in fast.modules() if isinstance(m, torch.nn.Linear))
    assert sum(p.numel() for p in fast.parameters()) == sum(p.numel() for p in built.parameters())
    ids = random_ids()
    assert torch.equal(fast(ids).logits, built(ids).logits)
    del weights["norm.weight"]
    with pytest.raises(RuntimeError, match="norm.weight"):
        Llama.from_weights(config, weights)


def test_column_major_linears_change_the_memory_order_only(tiny_llama_config):
    """Same shapes, values, state dict, tie, outputs (to float rounding) and gradients."""
    torch.manual_seed(0)
    rows = Llama(tiny_llama_config)
    cols = column_major_linears(copy.deepcopy(rows))
    linears = [m for m in cols.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.stride() == (1, m.out_features) for m in linears)
    assert cols.lm_head.weight is cols.embed.weight  # the tie survives, converted once
    for (name, a), b in zip(rows.state_dict().items(), cols.state_dict().values()):
        assert torch.equal(a, b), name
    ids = random_ids()
    out_r, out_c = rows(ids, targets=ids), cols(ids, targets=ids)
    assert torch.allclose(out_r.logits, out_c.logits, atol=1e-5, rtol=1e-5)
    out_r.loss.backward()
    out_c.loss.backward()
    grads = zip(rows.parameters(), cols.parameters())
    assert all(torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4) for a, b in grads)
    assert column_major_linears(cols) is cols  # a second call changes nothing
    assert all(m.weight.stride() == (1, m.out_features) for m in linears)


# --------------------------------------------------------------------------------------------
# Causality, the output layer and parameter counts


@torch.no_grad()
def test_attention_rows_are_causal_distributions(tiny_model):
    att = tiny_model(random_ids(), return_attention=True).attentions[0]  # (B, nh, T, T)
    assert torch.allclose(att.sum(-1), torch.ones(()), atol=1e-6)
    assert (att.triu(diagonal=1) == 0).all()


@torch.no_grad()
def test_future_tokens_do_not_change_earlier_logits(tiny_model):
    ids = random_ids(B=1)
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % V
    a, b = tiny_model(ids).logits, tiny_model(changed).logits
    assert torch.equal(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_without_targets_no_loss_and_no_attentions(tiny_model):
    out = tiny_model(random_ids(B=2, T=5))
    assert out.logits.shape == (2, 5, V)
    assert out.loss is None and out.attentions is None


def test_loss_is_the_mean_cross_entropy_of_the_scored_positions(tiny_model):
    ids, targets = random_ids(B=2), random_ids(B=2, seed=5)
    targets[0, :4] = -100  # e.g. a prompt that is not scored
    out = tiny_model(ids, targets=targets)
    logp = out.logits.log_softmax(-1)  # (B, T, V)
    scored = targets != -100
    want = -logp[scored].gather(-1, targets[scored][:, None]).mean()
    assert torch.allclose(out.loss, want, atol=1e-6)
    assert lm_loss(out.logits, None) is None


def test_gpt_ties_the_output_layer_to_the_embedding(tiny_gpt):
    assert tiny_gpt.lm_head.weight is tiny_gpt.transformer.wte.weight
    counts = count_parameters(tiny_gpt)
    assert "lm_head" not in counts
    assert counts["total"] == sum(p.numel() for p in tiny_gpt.parameters())


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    n_layers=st.integers(1, 4),
    n_heads=st.integers(1, 4),
    head_dim=st.integers(1, 8),
    vocab=st.integers(2, 300),
    block_size=st.integers(1, 64),
)
def test_gpt_parameter_count_is_12_l_d_squared_plus_embeddings(
    n_layers, n_heads, head_dim, vocab, block_size
):
    """Chapter 4's estimate N = 12 L d^2 + (V + T_max) d, exact once biases and norms are added.

    Per block: c_attn 3d^2 + 3d, c_proj d^2 + d, c_fc 4d^2 + 4d, the MLP's c_proj 4d^2 + d and
    two LayerNorms 4d, so 12d^2 + 13d; then the embeddings (V + T_max) d and the final norm 2d.
    """
    L, d = n_layers, n_heads * head_dim
    cfg = GPTConfig(block_size=block_size, vocab_size=vocab, n_layers=L, n_heads=n_heads,
                    d_model=d)  # fmt: skip
    counts = count_parameters(GPT(cfg))
    assert counts["total"] == 12 * L * d**2 + 13 * L * d + (vocab + block_size) * d + 2 * d
    assert counts["embeddings"] == (vocab + block_size) * d
    assert counts["attention"] + counts["mlp"] == 12 * L * d**2 + 9 * L * d


def test_fresh_models_start_near_uniform_predictions(tiny_gpt_config, tiny_llama_config):
    """GPT-2's small init: before training, the loss is close to log(V)."""
    torch.manual_seed(0)
    for model in (GPT(tiny_gpt_config), Llama(tiny_llama_config)):
        loss = model(random_ids(), targets=random_ids(seed=2)).loss.item()
        assert abs(loss - math.log(V)) < 0.1, loss


# --------------------------------------------------------------------------------------------
# Embeddings instead of token ids (prompt tuning feeds learned vectors this way)


@torch.no_grad()
def test_inputs_embeds_equal_the_token_ids(tiny_model):
    ids, targets = random_ids(), random_ids(seed=3)
    embed = tiny_model.get_input_embeddings()
    assert embed is (tiny_model.transformer.wte if isinstance(tiny_model, GPT)
                     else tiny_model.embed)  # fmt: skip
    want = tiny_model(ids, targets=targets)
    got = tiny_model(inputs_embeds=embed(ids), targets=targets)
    assert torch.equal(got.logits, want.logits) and torch.equal(got.loss, want.loss)
    # With left padding, and with a cache: the prompt as vectors, the rest as token ids.
    ids, mask = padded(ids, [0, 2, 6])
    want = tiny_model(ids, attention_mask=mask).logits
    assert torch.equal(tiny_model(inputs_embeds=embed(ids), attention_mask=mask).logits, want)
    cache = KVCache.for_model(tiny_model, batch_size=3, max_len=T)
    first = tiny_model(inputs_embeds=embed(ids[:, :9]), cache=cache, attention_mask=mask[:, :9])
    rest = tiny_model(ids[:, 9:], cache=cache, attention_mask=mask)
    assert max_diff(torch.cat([first.logits, rest.logits], dim=1), want) <= 1e-5


def test_gradients_reach_the_input_embeddings(tiny_model):
    """What prompt tuning trains: vectors in front of the tokens, the model frozen."""
    prompt = torch.zeros(1, 4, C, requires_grad=True)  # 4 learned "virtual tokens"
    x = torch.cat([prompt, tiny_model.get_input_embeddings()(random_ids(B=1, T=6))], dim=1)
    targets = torch.cat([torch.full((1, 4), -100), random_ids(B=1, T=6, seed=4)], dim=1)
    tiny_model(inputs_embeds=x, targets=targets).loss.backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0


BOTH = {"idx": torch.zeros(1, 2, dtype=torch.long), "inputs_embeds": torch.zeros(1, 2, C)}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one of idx"),
        (BOTH, "exactly one of idx"),
        ({"inputs_embeds": torch.zeros(1, 2)}, rf"must be a \(B, T, {C}\).*\(1, 2\)"),
        ({"inputs_embeds": torch.zeros(1, 2, C + 1)}, rf"\(B, T, {C}\).*\(1, 2, {C + 1}\)"),
        ({"inputs_embeds": [[0.0] * C]}, "inputs_embeds must be a .* tensor, got shape list"),
        ({"inputs_embeds": torch.zeros(1, 33, C)}, "33 new tokens exceed.*block_size 32"),
    ],
)
def test_bad_inputs_embeds_give_a_clear_error(tiny_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(**kwargs)


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "idx, error, match",
    [
        (torch.zeros(5, dtype=torch.long), ValueError, r"2-D \(B, T\).*\(5,\)"),
        (torch.zeros(1, 2, 3, dtype=torch.long), ValueError, r"shape \(1, 2, 3\)"),
        ([[1, 2, 3]], ValueError, "2-D"),
        (torch.zeros(1, 4), TypeError, "integer token ids.*float32"),
        (torch.zeros(1, 33, dtype=torch.long), ValueError, "33 exceeds.*block_size 32"),
        (torch.tensor([[1, V]]), ValueError, rf"\[0, {V}\).*max {V}"),
        (torch.tensor([[-1, 2]]), ValueError, "min -1"),
    ],
)
def test_bad_input_gives_a_clear_error(tiny_model, idx, error, match):
    with pytest.raises(error, match=match):
        tiny_model(idx)


def test_bad_targets_and_configs_give_clear_errors(tiny_gpt):
    with pytest.raises(ValueError, match=r"targets must have shape \(1, 4\)"):
        tiny_gpt(torch.zeros(1, 4, dtype=torch.long), targets=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="not divisible by n_heads"):
        GPT(GPTConfig(d_model=10, n_heads=3, n_layers=1))
    with pytest.raises(ValueError, match="n_heads by n_kv_heads: got n_heads 9, n_kv_heads 2"):
        Llama(LlamaConfig(n_layers=1, n_heads=9, n_kv_heads=2))


# --------------------------------------------------------------------------------------------
# KV cache, left padding and the fused attention path


@torch.no_grad()
def test_fused_and_teaching_attention_agree(tiny_model):
    """return_attention switches to lmlib.attention's explicit version; same logits."""
    ids, mask = padded(random_ids(), [0, 3, 9])
    for kwargs in ({}, {"attention_mask": mask}):
        fused = tiny_model(ids, **kwargs).logits
        teaching = tiny_model(ids, return_attention=True, **kwargs).logits
        diff = max_diff(fused, teaching)
        assert diff <= 1e-5, f"{kwargs.keys()}: fused and teaching differ by {diff:.2e}"
    cache = KVCache.for_model(tiny_model, batch_size=3, max_len=T)
    tiny_model(ids[:, :5], cache=cache)
    fused = tiny_model(ids[:, 5:9], cache=cache).logits
    cache.crop(5)  # forget those 4 tokens, and read them again
    out = tiny_model(ids[:, 5:9], cache=cache, return_attention=True)
    assert max_diff(fused, out.logits) <= 1e-5
    assert out.attentions[0].shape == (3, NH, 4, 9)  # (B, nh, T, cached + T)


@torch.no_grad()
def test_cache_in_chunks_equals_the_full_forward(tiny_model):
    ids, mask = padded(random_ids(), [0, 2, 6])
    for kwargs in ({}, {"attention_mask": mask}):
        full = tiny_model(ids, **kwargs).logits
        cache = KVCache.for_model(tiny_model, batch_size=3, max_len=T)
        chunks = []
        for start, end in [(0, 7), (7, 8), (8, 12), (12, T)]:
            part = {k: m[:, :end] for k, m in kwargs.items()}  # the mask covers cache + new
            out = tiny_model(ids[:, start:end], cache=cache, **part)
            assert out.cache is cache and cache.length == end
            chunks.append(out.logits)
        diff = max_diff(torch.cat(chunks, dim=1), full)
        assert diff <= 1e-5, f"{kwargs.keys()}: cached logits differ by {diff:.2e}"


@torch.no_grad()
def test_left_padded_row_equals_the_row_alone(tiny_model):
    """Positions count from the first real token, and no real token sees padding."""
    ids, mask = padded(random_ids(), [0, 5, 11])
    got = tiny_model(ids, attention_mask=mask).logits
    for b, n in enumerate([0, 5, 11]):
        alone = tiny_model(ids[b : b + 1, n:]).logits[0]
        assert max_diff(got[b, n:], alone) <= 1e-5


@torch.no_grad()
def test_last_only_gives_the_last_row_of_logits(tiny_model):
    ids = random_ids()
    last = tiny_model(ids, last_only=True).logits
    assert last.shape == (3, 1, V)
    assert torch.allclose(last, tiny_model(ids).logits[:, -1:], atol=1e-6)


def test_logits_at_computes_only_those_rows_with_the_same_loss_and_gradients(tiny_model):
    ids = random_ids()
    targets = torch.full_like(ids, -100)
    targets[0, 3:6], targets[2, -1] = ids[0, 4:7], 7  # an answer, and one label word
    at = targets != -100
    full = tiny_model(ids, targets)
    (full_grad,) = torch.autograd.grad(full.loss, tiny_model.lm_head.weight)
    part = tiny_model(ids, targets, logits_at=at)
    (part_grad,) = torch.autograd.grad(part.loss, tiny_model.lm_head.weight)
    assert part.logits.shape == (4, V)  # one row per True position, in row-major order
    torch.testing.assert_close(part.logits, full.logits[at], atol=1e-5, rtol=0)
    torch.testing.assert_close(part.loss, full.loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(part_grad, full_grad, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="last_only or logits_at, not both"):
        tiny_model(ids, logits_at=at, last_only=True)
    with pytest.raises(TypeError, match="logits_at must be a bool tensor"):
        tiny_model(ids, logits_at=at.long())
    with pytest.raises(ValueError, match=r"logits_at must have shape \(3, 16\)"):
        tiny_model(ids, logits_at=at[:, :-1])
    with pytest.raises(ValueError, match=r"targets must have shape \(3, 16\)"):
        tiny_model(ids, targets[:2], logits_at=at)


@torch.no_grad()
def test_cache_and_mask_errors_are_clear(tiny_model):
    ids = random_ids(B=2)
    cache = KVCache.for_model(tiny_model, batch_size=2, max_len=40)
    tiny_model(ids, cache=cache)
    with pytest.raises(ValueError, match="16 cached \\+ 17 new tokens exceed.*block_size 32"):
        tiny_model(random_ids(B=2, T=17), cache=cache)
    with pytest.raises(ValueError, match="cache holds 2 rows"):
        tiny_model(random_ids(B=3, T=1), cache=cache)
    with pytest.raises(ValueError, match=r"attention_mask must have shape.*\(2, 17\)"):
        tiny_model(random_ids(B=2, T=1), cache=cache, attention_mask=torch.ones(2, 1))
    with pytest.raises(ValueError, match=r"attention_mask must have shape.*\(2, 16\)"):
        tiny_model(ids, attention_mask=torch.ones(16))


# --------------------------------------------------------------------------------------------
# SmolLM2-135M with its real weights

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
]


@torch.no_grad()
def greedy(model, ids: torch.Tensor, n: int) -> torch.Tensor:
    """n greedy tokens, recomputing the whole sequence every step (no KV cache)."""
    for _ in range(n):
        next_id = model(ids).logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
        ids = torch.cat([ids, next_id], dim=1)
    return ids


@pytest.mark.slow
@torch.no_grad()
def test_smollm2_matches_hugging_face_logits_and_greedy_text():
    from lmlib.pretrained import llama_from_smollm2, load_smollm2

    hf, tok = load_smollm2()
    ours = llama_from_smollm2()
    assert ours.config.n_kv_heads == 3 and ours.lm_head.weight is ours.embed.weight
    counts = count_parameters(ours)
    print(counts)
    assert counts["total"] == sum(p.numel() for p in hf.parameters()) == 134_515_008
    for prompt in PROMPTS:
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        diff = max_diff(ours(ids).logits, hf(ids).logits)
        print(f"{prompt!r}: max |logits difference| = {diff:.2e}")
        assert diff <= 1e-3, f"{prompt!r}: logits differ by {diff:.2e}"
        want = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                           max_new_tokens=32, pad_token_id=tok.eos_token_id)  # fmt: skip
        got = greedy(ours, ids, 32)
        print(f"  greedy: {want.shape[1] - ids.shape[1]} new tokens, {tok.decode(got[0])!r}")
        # generate stops early at end-of-text; our loop does not, so compare what both have.
        assert torch.equal(got[:, : want.shape[1]], want), (
            f"{prompt!r}:\n  ours: {tok.decode(got[0])!r}\n  HF:   {tok.decode(want[0])!r}"
        )
