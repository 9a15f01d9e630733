"""Our GPT-2 and Llama against Hugging Face's with the same weights, plus causality and errors.

Tiny random configs (vocab 99, d_model 32, 2 layers, 4 heads) in the style of Hugging Face's
model testers check every weight mapping in well under a second; one slow test repeats the
comparison with SmolLM2-135M's real weights, including greedy generation.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")

from lmlib.model import (  # noqa: E402 (after the importorskip)
    GPT,
    GPTConfig,
    KVCache,
    Llama,
    LlamaConfig,
    count_parameters,
    kv_cache_bytes,
    llama_from_smollm2,
)

V, C, L, NH, NKV, T = 99, 32, 2, 4, 2, 16


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def gpt_pair():
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(
        vocab_size=V, n_positions=32, n_embd=C, n_layer=L, n_head=NH,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
        attn_implementation="eager",  # returns attention weights
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    ours = GPT.from_hf_state_dict(GPTConfig.from_hf(hf_config), hf.state_dict()).eval()
    return hf, ours


@pytest.fixture(scope="module")
def llama_pair():
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
    ours = Llama.from_hf(hf).eval()
    return hf, ours


@pytest.fixture(params=["gpt", "llama"])
def pair(request):
    return request.getfixturevalue(f"{request.param}_pair")


def random_ids(B=3, T=T, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_logits_loss_and_attentions_match_hugging_face(pair):
    hf, ours = pair
    ids = random_ids()
    want = hf(ids, labels=ids, output_attentions=True)
    # Hugging Face shifts labels inside; we take targets already shifted, -100 = no target.
    targets = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1)
    got = ours(ids, targets=targets, return_attention=True)

    diff = (got.logits - want.logits).abs().max().item()
    print(f"{type(ours).__name__}: max |logits difference| = {diff:.2e}")
    assert diff <= 1e-5, f"logits differ by {diff:.2e}"
    assert torch.allclose(got.loss, want.loss, atol=1e-6), (got.loss, want.loss)
    assert len(got.attentions) == L
    for layer, (a, b) in enumerate(zip(got.attentions, want.attentions)):
        assert a.shape == (3, NH, T, T)
        diff = (a - b).abs().max().item()
        assert diff <= 1e-5, f"layer {layer} attention weights differ by {diff:.2e}"


@torch.no_grad()
def test_attention_rows_are_causal_distributions(pair):
    _, ours = pair
    att = ours(random_ids(), return_attention=True).attentions[0]  # (B, nh, T, T)
    assert torch.allclose(att.sum(-1), torch.ones(()), atol=1e-6)
    assert (att.triu(diagonal=1) == 0).all()


@torch.no_grad()
def test_future_tokens_do_not_change_earlier_logits(pair):
    _, ours = pair
    ids = random_ids(B=1)
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % V
    a, b = ours(ids).logits, ours(changed).logits
    assert torch.equal(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_without_targets_no_loss_and_no_attentions(pair):
    _, ours = pair
    out = ours(random_ids(B=2, T=5))
    assert out.logits.shape == (2, 5, V)
    assert out.loss is None and out.attentions is None


def test_gpt_ties_the_output_layer_to_the_embedding(gpt_pair):
    _, ours = gpt_pair
    assert ours.lm_head.weight is ours.transformer.wte.weight
    counts = count_parameters(ours)
    assert "lm_head" not in counts
    assert counts["total"] == sum(p.numel() for p in ours.parameters())


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    n_layer=st.integers(1, 4),
    n_head=st.integers(1, 4),
    head_size=st.integers(1, 8),
    vocab=st.integers(2, 300),
    block_size=st.integers(1, 64),
)
def test_gpt_parameter_count_is_12_l_d_squared_plus_embeddings(
    n_layer, n_head, head_size, vocab, block_size
):
    """Chapter 4's estimate N = 12 L d^2 + (V + T_max) d, exact once biases and norms are added.

    Per block: c_attn 3d^2 + 3d, c_proj d^2 + d, c_fc 4d^2 + 4d, the MLP's c_proj 4d^2 + d and
    two LayerNorms 4d, so 12d^2 + 13d; then the embeddings (V + T_max) d and the final norm 2d.
    """
    L, d = n_layer, n_head * head_size
    cfg = GPTConfig(block_size=block_size, vocab_size=vocab, n_layer=L, n_head=n_head, d_model=d)
    counts = count_parameters(GPT(cfg))
    assert counts["total"] == 12 * L * d**2 + 13 * L * d + (vocab + block_size) * d + 2 * d
    assert counts["embeddings"] == (vocab + block_size) * d
    assert counts["attention"] + counts["mlp"] == 12 * L * d**2 + 9 * L * d


def test_llama_untied_head_is_counted_and_copied(llama_pair):
    hf, ours = llama_pair
    counts = count_parameters(ours)
    assert counts["lm_head"] == V * C
    assert counts["total"] == sum(p.numel() for p in hf.parameters())
    assert ours.embed.weight.data_ptr() != hf.model.embed_tokens.weight.data_ptr()  # a copy


@torch.no_grad()
def test_llama_loads_from_a_state_dict_and_config(llama_pair):
    hf, ours = llama_pair
    again = Llama.from_hf(hf.state_dict(), hf.config).eval()
    ids = random_ids()
    assert torch.equal(again(ids).logits, ours(ids).logits)
    with pytest.raises(ValueError, match="hf_config"):
        Llama.from_hf(hf.state_dict())


def test_fresh_models_start_near_uniform_predictions():
    """GPT-2's small init: before training, the loss is close to log(V)."""
    torch.manual_seed(0)
    ids = random_ids()
    for model in (GPT(GPTConfig(block_size=T, vocab_size=V, n_layer=L, n_head=NH, d_model=C)),
                  Llama(LlamaConfig(vocab_size=V, block_size=T, n_layer=L, n_head=NH,
                                    n_kv_head=NKV, d_model=C, hidden=64))):  # fmt: skip
        loss = model(ids, targets=random_ids(seed=2)).loss.item()
        assert abs(loss - torch.log(torch.tensor(float(V))).item()) < 0.1, loss


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
def test_bad_input_gives_a_clear_error(pair, idx, error, match):
    _, ours = pair
    with pytest.raises(error, match=match):
        ours(idx)


def test_bad_targets_and_configs_give_clear_errors(gpt_pair):
    _, ours = gpt_pair
    with pytest.raises(ValueError, match=r"targets must have shape \(1, 4\)"):
        ours(torch.zeros(1, 4, dtype=torch.long), targets=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="not divisible"):
        GPT(GPTConfig(d_model=10, n_head=3, n_layer=1))
    with pytest.raises(ValueError, match="n_kv_head"):
        Llama(LlamaConfig(n_layer=1, n_head=9, n_kv_head=2))


# --------------------------------------------------------------------------------------------
# KV cache, left padding and the fused attention path


def padded(ids, n_pad):
    """ids (B, T) with row b's first n_pad[b] tokens replaced by padding, and its mask."""
    mask = torch.ones_like(ids)
    for b, n in enumerate(n_pad):
        mask[b, :n] = 0
    return ids.masked_fill(mask == 0, 0), mask


@torch.no_grad()
def test_fused_and_teaching_attention_agree(pair):
    """return_attention switches to lmlib.attention's explicit version; same logits."""
    _, ours = pair
    ids, mask = padded(random_ids(), [0, 3, 9])
    for kwargs in ({}, {"attention_mask": mask}):
        fused = ours(ids, **kwargs).logits
        teaching = ours(ids, return_attention=True, **kwargs).logits
        diff = (fused - teaching).abs().max().item()
        assert diff <= 1e-5, f"{kwargs.keys()}: fused and teaching differ by {diff:.2e}"
    cache = KVCache.for_model(ours, batch_size=3, max_len=T)
    ours(ids[:, :5], cache=cache)
    fused = ours(ids[:, 5:9], cache=cache).logits
    cache.layers[0].length = cache.layers[1].length = 5  # rewind, and read them again
    out = ours(ids[:, 5:9], cache=cache, return_attention=True)
    assert (fused - out.logits).abs().max().item() <= 1e-5
    assert out.attentions[0].shape == (3, NH, 4, 9)  # (B, nh, T, cached + T)


@torch.no_grad()
def test_cache_in_chunks_equals_the_full_forward(pair):
    _, ours = pair
    ids, mask = padded(random_ids(), [0, 2, 6])
    for kwargs in ({}, {"attention_mask": mask}):
        full = ours(ids, **kwargs).logits
        cache = KVCache.for_model(ours, batch_size=3, max_len=T)
        chunks = []
        for start, end in [(0, 7), (7, 8), (8, 12), (12, T)]:
            part = {k: m[:, :end] for k, m in kwargs.items()}  # the mask covers cache + new
            out = ours(ids[:, start:end], cache=cache, **part)
            assert out.cache is cache and cache.length == end
            chunks.append(out.logits)
        diff = (torch.cat(chunks, dim=1) - full).abs().max().item()
        assert diff <= 1e-5, f"{kwargs.keys()}: cached logits differ by {diff:.2e}"


@torch.no_grad()
def test_left_padded_row_equals_the_row_alone(pair):
    """Positions count from the first real token, and no real token sees padding."""
    hf, ours = pair
    ids, mask = padded(random_ids(), [0, 5, 11])
    got = ours(ids, attention_mask=mask).logits
    # Hugging Face's forward takes the positions separately (its generate computes them so).
    want = hf(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    for b, n in enumerate([0, 5, 11]):
        alone = ours(ids[b : b + 1, n:]).logits[0]
        assert (got[b, n:] - alone).abs().max().item() <= 1e-5
        assert (got[b, n:] - want[b, n:]).abs().max().item() <= 1e-5


@torch.no_grad()
def test_last_only_gives_the_last_row_of_logits(pair):
    _, ours = pair
    ids = random_ids()
    last = ours(ids, last_only=True).logits
    assert last.shape == (3, 1, V)
    assert torch.allclose(last, ours(ids).logits[:, -1:], atol=1e-6)


def test_kv_cache_bytes_is_the_memory_of_a_filled_cache(pair):
    _, ours = pair
    cache = KVCache.for_model(ours, batch_size=3, max_len=T)
    stored = sum(t.numel() * t.element_size() for kv in cache.layers for t in (kv.k, kv.v))
    assert kv_cache_bytes(ours.config, batch_size=3, seq_len=T) == stored
    # GPT-2 small: 2 * 12 layers * 768 channels * 4 bytes = 73,728 bytes per token.
    assert kv_cache_bytes(GPTConfig(), batch_size=1, seq_len=1) == 73_728
    # SmolLM2-135M: 2 * 30 layers * 3 kv heads * 64 * 2 bytes (bf16) = 23,040 per token.
    assert kv_cache_bytes(LlamaConfig(), 1, 1, dtype=torch.bfloat16) == 23_040


@torch.no_grad()
def test_cache_and_mask_errors_are_clear(pair):
    _, ours = pair
    ids = random_ids(B=2)
    cache = KVCache.for_model(ours, batch_size=2, max_len=40)
    ours(ids, cache=cache)
    with pytest.raises(ValueError, match="16 cached \\+ 17 new tokens exceed.*block_size 32"):
        ours(random_ids(B=2, T=17), cache=cache)
    with pytest.raises(ValueError, match="cache holds 2 rows"):
        ours(random_ids(B=3, T=1), cache=cache)
    with pytest.raises(ValueError, match=r"attention_mask must have shape.*\(2, 17\)"):
        ours(random_ids(B=2, T=1), cache=cache, attention_mask=torch.ones(2, 1))
    with pytest.raises(ValueError, match=r"attention_mask must have shape.*\(2, 16\)"):
        ours(ids, attention_mask=torch.ones(16))


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
    from lmlib.pretrained import load_smollm2

    hf, tok = load_smollm2()
    ours = llama_from_smollm2()
    assert ours.config.n_kv_head == 3 and ours.lm_head.weight is ours.embed.weight
    counts = count_parameters(ours)
    print(counts)
    assert counts["total"] == sum(p.numel() for p in hf.parameters()) == 134_515_008
    for prompt in PROMPTS:
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        diff = (ours(ids).logits - hf(ids).logits).abs().max().item()
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
