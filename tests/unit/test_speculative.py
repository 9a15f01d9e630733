"""Speculative decoding (lmlib.speculative), its prompt lookup, and the packed low-bit
layers it drafts with (lmlib.quantization.PackedLinear, quantize_minmax).

References: `lmlib.generate.generate` (greedy decoding, which speculative decoding must
reproduce token for token, whatever the draft), the de-quantized weight in float32 for the
packed kernels, hand-checked Q4_1 blocks. One slow test runs the real SmolLM2 with its
4-bit draft.
"""

import math

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.generate import generate
from lmlib.model import GPT, GPTConfig, Llama, LlamaConfig
from lmlib.quantization import PackedLinear, quantize_minmax
from lmlib.speculative import low_bit_draft, prompt_lookup, speculative_generate

V = 13


def tiny(kind: str, seed: int, block_size: int = 64) -> nn.Module:
    """A random tiny model in float64, so that reading k positions at once and one at a
    time round alike and greedy choices cannot flip on a last-bit tie."""
    torch.manual_seed(seed)
    if kind == "gpt":
        cfg = GPTConfig(block_size=block_size, vocab_size=V, n_layers=2, n_heads=2, d_model=8)
        return GPT(cfg).double().eval()
    cfg = LlamaConfig(block_size=block_size, vocab_size=V, n_layers=2, n_heads=2,
                      n_kv_heads=1, d_model=8, hidden=16)  # fmt: skip
    return Llama(cfg).double().eval()


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["gpt", "llama"]),
    draft_seed=st.integers(1, 50),
    k=st.integers(1, 6),
    new=st.integers(0, 20),
    prompt=st.lists(st.integers(0, V - 1), min_size=1, max_size=6),
)
def test_any_draft_gives_greedy_decodings_tokens(kind, draft_seed, k, new, prompt):
    model, draft = tiny(kind, 0), tiny(kind, draft_seed)  # the draft: another random model
    idx = torch.tensor([prompt])
    out = speculative_generate(model, draft, idx, new, draft_tokens=k)
    assert torch.equal(out.tokens, generate(model, idx, max_new_tokens=new))
    assert 0 <= out.accepted <= out.drafted and out.prompt_length == len(prompt)
    assert out.model_calls <= max(new, 0) + (new > 0)


def test_the_model_as_its_own_draft_keeps_every_guess():
    model = tiny("llama", 0)
    out = speculative_generate(model, model, torch.tensor([[1, 2, 3]]), 13, draft_tokens=4)
    # the prompt's pass gives token 1, then rounds of 4 guesses + 1 of the model's own
    assert out.acceptance_rate == 1.0 and out.drafted == out.accepted == 12 - 2
    assert out.model_calls == 1 + math.ceil(12 / 5) == 4
    assert out.tokens_per_call == 13 / 4


def test_a_draft_that_is_always_wrong_still_gives_the_models_text():
    model = tiny("gpt", 0)

    class Contrary(nn.Module):  # guesses the model's least likely token
        def __init__(self):
            super().__init__()
            self.inner, self.config = tiny("gpt", 0), model.config

        def forward(self, idx, **kwargs):
            out = self.inner(idx, **kwargs)
            out.logits = -out.logits
            return out

    idx = torch.tensor([[4, 5]])
    out = speculative_generate(model, Contrary(), idx, 9, draft_tokens=3)
    assert torch.equal(out.tokens, generate(model, idx, max_new_tokens=9))
    assert out.accepted == 0 and out.model_calls == 9  # one token per pass, as without it


def test_stops_after_the_first_end_of_sequence_token():
    model = tiny("llama", 0)
    idx = torch.tensor([[1, 2]])
    plain = generate(model, idx, max_new_tokens=12)[0, 2:].tolist()
    eos = plain[4]  # a token the model produces
    first = plain.index(eos)
    out = speculative_generate(model, tiny("llama", 3), idx, 12, eos_token_id=[eos])
    assert out.tokens[0, 2:].tolist() == plain[: first + 1]
    # The model as its own draft keeps every guess: the first round's 8 guesses reach an
    # end token, and generation stops after that pass instead of running on to 12 tokens.
    model = tiny("gpt", 5)
    plain = generate(model, idx, max_new_tokens=12)[0, 2:].tolist()
    assert plain[:6] == [2, 2, 5, 7, 7, 0]  # 7 first comes 4th: inside the first round
    out = speculative_generate(model, model, idx, 12, draft_tokens=8, eos_token_id=[7])
    assert out.tokens[0, 2:].tolist() == plain[:4] and out.model_calls == 2


def test_zero_new_tokens_returns_the_prompt():
    model = tiny("gpt", 0)
    out = speculative_generate(model, model, torch.tensor([[3, 4]]), 0)
    assert out.tokens.tolist() == [[3, 4]] and out.model_calls == 0


# --------------------------------------------------------------------------------------------
# Prompt lookup: guesses copied from the text


def test_prompt_lookup_copies_what_followed_the_latest_match_of_the_longest_n_gram():
    text = [1, 2, 3, 9, 7, 2, 3, 4, 5, 1, 2, 3]
    # "1 2 3" occurred at 0 (then 9 7); "2 3" alone more recently (then 4 5): longest wins
    assert prompt_lookup(text, 2, max_ngram=3) == [9, 7]
    assert prompt_lookup(text, 2, max_ngram=2) == [4, 5]  # the latest "2 3"
    assert prompt_lookup(text, 9, max_ngram=3) == [9, 7, 2, 3, 4, 5, 1, 2, 3]
    # what followed "4 4" at 0 is the last 4, and the copy goes on from the guesses
    assert prompt_lookup([4, 4, 4], 5) == [4, 4, 4, 4, 4]
    assert prompt_lookup([5, 1, 2, 3, 1, 2], 4) == [3, 1, 2, 3]  # a loop of 3
    assert prompt_lookup([1, 2, 1], 3) == [] and prompt_lookup([], 3) == []
    assert prompt_lookup(text, 0) == []


@settings(max_examples=60, deadline=None)
@given(text=st.lists(st.integers(0, 3), max_size=40), n=st.integers(0, 6),
       ngram=st.integers(2, 4))  # fmt: skip
def test_prompt_lookup_guesses_continue_an_earlier_copy_of_the_texts_end(text, n, ngram):
    guesses = prompt_lookup(text, n, max_ngram=ngram)
    assert len(guesses) <= n
    if guesses:  # an m-gram ending the text occurred at j, followed by the guesses (which
        # may run on into themselves)
        assert any(
            text[j : j + m] == text[-m:]
            and (text + guesses)[j + m : j + m + len(guesses)] == guesses
            for m in range(2, ngram + 1)
            for j in range(len(text) - m)
        )
    elif n:  # no m-gram ending the text, for any m from 2 to ngram, occurred before
        sizes = range(2, min(ngram, len(text) - 1) + 1)
        assert not any(text[j : j + m] == text[-m:] for m in sizes for j in range(len(text) - m))


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["gpt", "llama"]),
    with_draft=st.booleans(),
    k=st.integers(1, 6),
    ngram=st.integers(2, 4),
    new=st.integers(0, 24),
    motif=st.lists(st.integers(0, V - 1), min_size=1, max_size=4),
)
def test_prompt_lookup_gives_greedy_decodings_tokens(kind, with_draft, k, ngram, new, motif):
    model = tiny(kind, 0)
    draft = tiny(kind, 7) if with_draft else None
    idx = torch.tensor([motif * 3])  # a prompt that repeats, so lookup finds matches
    out = speculative_generate(model, draft, idx, new, draft_tokens=k, lookup_ngram=ngram)
    assert torch.equal(out.tokens, generate(model, idx, max_new_tokens=new))
    assert 0 <= out.looked_up_kept <= out.looked_up <= out.drafted
    assert 0 <= out.accepted <= out.drafted
    if not with_draft:
        assert out.looked_up == out.drafted


def test_prompt_lookup_on_a_looping_text_keeps_long_runs_of_copied_guesses():
    model = tiny("llama", 0)
    idx = torch.tensor([[1, 2]])
    plain = generate(model, idx, max_new_tokens=40)
    text = plain[0].tolist()
    # the tiny model's greedy text falls into a loop, as SmolLM2's does
    assert text[-6:] == text[-12:-6] or text[-4:] == text[-8:-4] or text[-2:] == text[-4:-2]
    out = speculative_generate(model, None, idx, 40, draft_tokens=6, lookup_ngram=3)
    assert torch.equal(out.tokens, plain)
    assert out.looked_up_kept > 25 and out.model_calls < 15  # well under one pass a token


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda m: speculative_generate(m, m, torch.tensor([[1], [2]]), 3), ValueError,
         "one prompt"),
        (lambda m: speculative_generate(m, tiny("gpt", 1, block_size=8), torch.tensor([[1]]),
                                        5, draft_tokens=4), ValueError, "block_size 8"),
        (lambda m: speculative_generate(m, m, torch.tensor([[1]]), 3, draft_tokens=0),
         ValueError, "draft_tokens"),
        (lambda m: speculative_generate(m, m, torch.tensor([[V]]), 3), ValueError,
         r"lie in \[0, 13\)"),
        (lambda m: speculative_generate(m, nn.Linear(2, 2), torch.tensor([[1]]), 3),
         TypeError, "draft must be"),
        (lambda m: speculative_generate(m, GPT(GPTConfig(block_size=8, vocab_size=V + 1,
                                        n_layers=1, n_heads=1, d_model=4)),
                                        torch.tensor([[1]]), 3), ValueError, "vocabulary"),
        (lambda m: low_bit_draft(nn.Linear(2, 2)), TypeError, "GPT or Llama"),
        (lambda m: speculative_generate(m, None, torch.tensor([[1]]), 3), ValueError,
         "nothing makes guesses"),
        (lambda m: speculative_generate(m, m, torch.tensor([[1]]), 3, lookup_ngram=1),
         ValueError, "0 \\(off\\) or at least 2"),
        (lambda m: speculative_generate(m, None, torch.tensor([[1]]), 3, lookup_ngram=-2),
         ValueError, "lookup_ngram"),
        (lambda m: prompt_lookup([1, 2], 3, max_ngram=1), ValueError, "max_ngram"),
        (lambda m: prompt_lookup([1, 2], -1), ValueError, "n must be"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_a_clear_error(call, error, words):
    with pytest.raises(error, match=words):
        call(tiny("gpt", 0))


# --------------------------------------------------------------------------------------------
# The low-bit layers


def test_quantize_minmax_recovers_q4_1_blocks_exactly():
    """Weights that are already low + scale * q (GGUF's Q4_1, with 0 and 15 in each block)
    come back as the same integers, and de-quantize to themselves."""
    torch.manual_seed(0)
    q = torch.randint(0, 16, (4, 64), dtype=torch.uint8)
    q[:, ::32], q[:, 1::32] = 0, 15  # every block of 32 uses both ends of its range
    scale, low = torch.rand(4, 2) / 8 + 0.01, torch.randn(4, 2) / 4
    w = low.repeat_interleave(32, 1) + scale.repeat_interleave(32, 1) * q
    q2, scale2, low2 = quantize_minmax(w, bits=4, group_size=32)
    assert torch.equal(q2, q)
    torch.testing.assert_close(low2, low)
    torch.testing.assert_close(scale2, scale)


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(1, 8), rows=st.integers(1, 5), groups=st.integers(1, 4),
       seed=st.integers(0, 1000))  # fmt: skip
def test_quantize_minmax_errs_by_at_most_half_a_step(bits, rows, groups, seed):
    torch.manual_seed(seed)
    w = torch.randn(rows, 8 * groups) * 3
    q, scale, low = quantize_minmax(w, bits, group_size=8)
    assert int(q.max()) <= 2**bits - 1
    back = low.repeat_interleave(8, 1) + scale.repeat_interleave(8, 1) * q.float()
    assert ((back - w).abs() <= scale.repeat_interleave(8, 1) / 2 + 1e-5).all()


def test_quantize_minmax_refuses_bad_input():
    with pytest.raises(ValueError, match="divide"):
        quantize_minmax(torch.ones(2, 10), group_size=4)
    with pytest.raises(TypeError, match="2-D floating-point"):
        quantize_minmax(torch.ones(10))
    with pytest.raises(ValueError, match="bits"):
        quantize_minmax(torch.ones(2, 8), bits=9, group_size=8)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("shape", [(64, 96), (48, 32), (5, 40), (3, 64)])
def test_packed_linear_computes_its_de_quantized_weight(bits, shape):
    """The packed kernels (where the shape fits them) and the fallback both compute
    x @ W_q.T + b, W_q the de-quantized weight, to bfloat16's precision."""
    out_features, in_features = shape
    group = 32 if in_features % 32 == 0 else 8
    torch.manual_seed(0)
    linear = nn.Linear(in_features, out_features)
    layer = PackedLinear(linear, bits, group)
    fits = out_features % 16 == 0 and in_features % 32 == 0
    assert layer.packed == fits
    w = linear.weight.detach()
    if bits == 4:
        q, scale, low = quantize_minmax(w, 4, group)
        wq = low.repeat_interleave(group, 1) + scale.repeat_interleave(group, 1) * q
    else:
        scale = w.abs().amax(dim=1, keepdim=True) / 127
        wq = (w / scale).round() * scale
    x = torch.randn(2, 3, in_features)
    want = x @ wq.T + linear.bias.detach()
    got = layer(x)
    assert got.shape == (2, 3, out_features) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0.03, rtol=0.02)  # bfloat16: 8 bits
    with pytest.raises(ValueError, match=f"end in {in_features}"):
        layer(torch.randn(2, in_features + 1))


def test_low_bit_draft_replaces_every_linear_and_leaves_the_model_alone():
    model = tiny("llama", 0, block_size=32).float()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    draft = low_bit_draft(model, group_size=8)  # d_model 8: groups of 32 do not fit
    layers = [m for m in draft.modules() if isinstance(m, PackedLinear)]
    assert not any(isinstance(m, nn.Linear) for m in draft.modules())
    assert len(layers) == 2 * 7 + 1  # 7 per block (q, k, v, o, gate, up, down), lm_head
    assert draft.lm_head.bits == 8 and {m.bits for m in layers[:-1]} == {4}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert any(isinstance(m, nn.Linear) for m in model.modules())
    idx = torch.tensor([[1, 2, 3]])
    out = speculative_generate(model, draft, idx, 8, draft_tokens=3)
    assert torch.equal(out.tokens, generate(model, idx, max_new_tokens=8))


@pytest.mark.slow
def test_smollm2_with_its_4_bit_draft_or_prompt_lookup_gives_the_same_tokens():
    from lmlib.pretrained import llama_from_smollm2

    model = llama_from_smollm2("cpu").eval()
    draft = low_bit_draft(model)
    packed = [m.packed for m in draft.modules() if isinstance(m, PackedLinear)]
    idx = torch.tensor([[1, 9690, 198, 2683, 253, 1789, 563, 253, 9340, 30]])
    out = speculative_generate(model, draft, idx, 48, draft_tokens=6)
    plain = generate(model, idx, max_new_tokens=48)
    assert torch.equal(out.tokens, plain)
    assert out.acceptance_rate > 0.5, out
    both = speculative_generate(model, draft, idx, 48, draft_tokens=6, lookup_ngram=3)
    look = speculative_generate(model, None, idx, 48, draft_tokens=6, lookup_ngram=3)
    assert torch.equal(both.tokens, plain) and torch.equal(look.tokens, plain)
    assert look.looked_up == look.drafted and both.looked_up <= both.drafted
    assert all(packed) or not hasattr(torch, "_weight_int4pack_mm_for_cpu")
