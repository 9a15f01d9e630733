"""`lmlib.generate` against Hugging Face's ``generate``, token for token, with the same weights.

Tiny random GPT-2 and Llama models (vocab 99, d_model 32, 2 layers) check greedy decoding,
beam search, sampling and the logits processors against `transformers`; the cache against
recomputing every step; a padded batch against each prompt alone. Slow tests repeat greedy
and beam search with SmolLM2-135M's real weights, on plain and chat-template prompts.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")

from transformers.generation import logits_process as hf_lp  # noqa: E402

from lmlib.generate import (  # noqa: E402 (after the importorskip)
    apply_repetition_penalty,
    apply_temperature,
    beam_search,
    generate,
    generate_text,
    left_pad,
    min_p_filter,
    sample,
    stream,
    time_generation,
    top_k_filter,
    top_p_filter,
)
from lmlib.model import GPT, GPTConfig, Llama, llama_from_smollm2  # noqa: E402

V, C, L, NH, NKV, BLOCK = 99, 32, 2, 4, 2, 64
EOS = 0  # the tiny models' eos (and pad) token, as in their configs


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread: more threads only add synchronisation, and on
    a shared CPU they wait for each other (these tests take 5x longer on 2 busy cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def gpt_pair():
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(
        vocab_size=V, n_positions=BLOCK, n_embd=C, n_layer=L, n_head=NH, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS,
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    ours = GPT.from_hf_state_dict(GPTConfig.from_hf(hf_config), hf.state_dict()).eval()
    return hf, ours


@pytest.fixture(scope="module")
def llama_pair():
    torch.manual_seed(0)
    hf_config = transformers.LlamaConfig(
        vocab_size=V, hidden_size=C, intermediate_size=64, num_hidden_layers=L,
        num_attention_heads=NH, num_key_value_heads=NKV, max_position_embeddings=BLOCK,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=EOS, eos_token_id=EOS,
        pad_token_id=EOS,
    )  # fmt: skip
    hf = transformers.LlamaForCausalLM(hf_config).eval()
    ours = Llama.from_hf(hf).eval()
    return hf, ours


@pytest.fixture(params=["gpt", "llama"])
def pair(request):
    return request.getfixturevalue(f"{request.param}_pair")


def prompts(lengths=(7, 4, 1), seed=1):
    """Random prompts of different lengths (no eos inside), left-padded: (idx, mask, rows)."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(1, V, (n,), generator=g).tolist() for n in lengths]
    idx, mask = left_pad(rows, pad_id=EOS)
    return idx, mask, rows


def hf_generate(hf, idx, mask, n, **kwargs):
    kwargs = dict(do_sample=False, eos_token_id=EOS, pad_token_id=EOS) | kwargs
    with torch.no_grad():
        return hf.generate(idx, attention_mask=mask, max_new_tokens=n, **kwargs)


# --------------------------------------------------------------------------------------------
# Greedy decoding, the cache and padding


@pytest.mark.parametrize("lengths", [(6,), (7, 4, 1)])
@pytest.mark.parametrize("penalty", [None, 1.5])
def test_greedy_matches_hugging_face(pair, lengths, penalty):
    hf, ours = pair
    idx, mask, _ = prompts(lengths)
    want = hf_generate(hf, idx, mask, 12, repetition_penalty=penalty)
    got = generate(ours, idx, 12, attention_mask=mask, eos_token_id=EOS,
                   repetition_penalty=penalty)  # fmt: skip
    assert torch.equal(got, want), f"\nours {got}\nHF   {want}"


@pytest.mark.parametrize("batched", [False, True])
def test_cache_gives_the_same_tokens_as_recomputing(pair, batched):
    _, ours = pair
    idx, mask, _ = prompts((7, 4, 1) if batched else (7,))
    a = generate(ours, idx, 20, attention_mask=mask, use_cache=True)
    b = generate(ours, idx, 20, attention_mask=mask, use_cache=False)
    assert a.shape == (idx.size(0), idx.size(1) + 20)
    assert torch.equal(a, b)


@pytest.mark.parametrize("use_cache", [True, False])
def test_each_row_of_a_padded_batch_equals_its_prompt_alone(pair, use_cache):
    _, ours = pair
    idx, mask, rows = prompts((7, 4, 1))
    # An eos that one row actually produces, so that rows finish at different steps.
    eos = generate(ours, idx[1:2, -4:], 3)[0, -1].item()
    batch = generate(ours, idx, 10, attention_mask=mask, eos_token_id=eos, pad_token_id=EOS,
                     use_cache=use_cache)  # fmt: skip
    T = idx.size(1)
    for b, row in enumerate(rows):
        alone = generate(ours, torch.tensor([row]), 10, eos_token_id=eos, use_cache=use_cache)
        n = alone.size(1) - len(row)
        assert batch[b, T : T + n].tolist() == alone[0, len(row) :].tolist()
        assert (batch[b, T + n :] == EOS).all()  # finished rows are padded
    assert (batch[1, T:] == eos).any() and batch[1, -1] == EOS  # row 1 stopped early


def test_generation_ends_when_every_row_is_finished(gpt_pair):
    _, ours = gpt_pair
    idx = torch.tensor([[5, 6, 7]])
    first = generate(ours, idx, 1)[0, -1].item()
    out = generate(ours, idx, 10, eos_token_id=[98, first])  # several eos ids are fine
    assert out.tolist() == [[5, 6, 7, first]]


# --------------------------------------------------------------------------------------------
# Beam search


@pytest.mark.parametrize("num_beams", [2, 3])
@pytest.mark.parametrize("lengths", [(6,), (7, 4, 1)])
def test_beam_search_matches_hugging_face(pair, num_beams, lengths):
    hf, ours = pair
    idx, mask, _ = prompts(lengths)
    for eos in (EOS, None):
        want = hf_generate(hf, idx, mask, 12, num_beams=num_beams, eos_token_id=eos)
        got = beam_search(ours, idx, 12, num_beams, attention_mask=mask, eos_token_id=eos)
        assert torch.equal(got, want), f"eos {eos}:\nours {got}\nHF   {want}"


def test_beam_search_with_eos_and_length_penalty_matches_hugging_face(llama_pair):
    """Eos tokens that the beams really reach, so that hypotheses finish at different lengths
    and the stopping rule decides; a lone prompt may stop long before max_new_tokens."""
    hf, ours = llama_pair
    idx, mask, _ = prompts((7, 4, 1), seed=3)
    cases = [(eos, lp, idx, mask) for eos in (52, 98) for lp in (1.0, 0.0, 2.0)]
    cases += [(52, 1.0, idx[2:, -1:], mask[2:, -1:])]  # one prompt alone
    for eos, length_penalty, i, m in cases:
        want = hf_generate(hf, i, m, 15, num_beams=3, eos_token_id=eos, pad_token_id=eos,
                           length_penalty=length_penalty)  # fmt: skip
        got = beam_search(ours, i, 15, 3, attention_mask=m, eos_token_id=eos,
                          length_penalty=length_penalty)  # fmt: skip
        assert torch.equal(got, want), f"eos {eos}, penalty {length_penalty}:\n{got}\n{want}"
    # These settings do end hypotheses early: the lone prompt stops after 5 tokens.
    short = beam_search(ours, idx[2:, -1:], 15, 3, eos_token_id=52)
    assert short.size(1) == 6 and short[0, -1] == 52


def test_beam_search_cache_and_one_beam(gpt_pair):
    _, ours = gpt_pair
    idx, mask, _ = prompts((5, 3))
    a = beam_search(ours, idx, 10, 3, attention_mask=mask, use_cache=True)
    b = beam_search(ours, idx, 10, 3, attention_mask=mask, use_cache=False)
    assert torch.equal(a, b)
    # One beam is greedy decoding.
    greedy = generate(ours, idx, 10, attention_mask=mask)
    assert torch.equal(beam_search(ours, idx, 10, 1, attention_mask=mask), greedy)


# --------------------------------------------------------------------------------------------
# Sampling and the logits processors


def test_sampling_matches_hugging_face_with_the_same_seed(llama_pair):
    """Both draw with torch.multinomial from the global generator: same seed, same tokens."""
    hf, ours = llama_pair
    idx, mask, _ = prompts((6,))
    settings = dict(do_sample=True, temperature=0.8, top_k=20, top_p=0.9, min_p=0.05,
                    repetition_penalty=1.3)  # fmt: skip
    torch.manual_seed(123)
    want = hf_generate(hf, idx, mask, 15, **settings)
    torch.manual_seed(123)
    got = generate(ours, idx, 15, attention_mask=mask, eos_token_id=EOS, **settings)
    assert torch.equal(got, want), f"\nours {got}\nHF   {want}"


def test_sampling_is_reproducible_with_a_generator(gpt_pair):
    _, ours = gpt_pair
    idx, mask, _ = prompts((5, 2))

    def run(seed, use_cache=True):
        g = torch.Generator().manual_seed(seed)
        return generate(ours, idx, 15, attention_mask=mask, do_sample=True, temperature=1.5,
                        generator=g, use_cache=use_cache)  # fmt: skip

    assert torch.equal(run(0), run(0))
    assert torch.equal(run(0), run(0, use_cache=False))
    assert not torch.equal(run(0), run(1))


def random_logits(seed, B=4, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, V, generator=g) * scale


@pytest.mark.parametrize("seed", range(3))
def test_processors_match_hugging_face_warpers(seed):
    logits = random_logits(seed)
    ids = torch.randint(0, V, (4, 12), generator=torch.Generator().manual_seed(seed))
    cases = [
        (apply_temperature(logits, 0.7), hf_lp.TemperatureLogitsWarper(0.7)),
        (top_k_filter(logits, 5), hf_lp.TopKLogitsWarper(5)),
        (top_k_filter(logits, 500), hf_lp.TopKLogitsWarper(500)),
        (min_p_filter(logits, 0.1), hf_lp.MinPLogitsWarper(0.1)),
        (min_p_filter(logits, 1.0), hf_lp.MinPLogitsWarper(1.0)),
        (apply_repetition_penalty(logits, ids, 1.5), hf_lp.RepetitionPenaltyLogitsProcessor(1.5)),
        (apply_repetition_penalty(logits, ids, 0.5), hf_lp.RepetitionPenaltyLogitsProcessor(0.5)),
    ]
    cases += [(top_p_filter(logits, p), hf_lp.TopPLogitsWarper(p)) for p in (0.01, 0.5, 0.9, 1.0)]
    for got, warper in cases:
        want = warper(ids, logits.clone())
        assert torch.equal(got, want), type(warper).__name__


def test_repetition_penalty_skips_padding_like_hugging_face():
    logits = random_logits(0, B=2)
    idx, mask = left_pad([[3, 4, 5], [7]], pad_id=9)  # pad 9 is not in row 1's text
    got = apply_repetition_penalty(logits, idx, 2.0, mask)
    hf = hf_lp.RepetitionPenaltyLogitsProcessor(2.0, prompt_ignore_length=torch.tensor([0, 2]))
    assert torch.equal(got, hf(idx, logits.clone()))
    assert got[1, 9] == logits[1, 9] and got[1, 7] != logits[1, 7]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), p=st.floats(0.01, 1.0), min_p=st.floats(0.0, 1.0),
       k=st.integers(1, V + 5), scale=st.floats(0.1, 20.0))  # fmt: skip
def test_filters_keep_the_arg_max_and_the_probability_order(seed, p, min_p, k, scale):
    logits = random_logits(seed, scale=scale)
    top = logits.argmax(-1, keepdim=True)
    probs = logits.softmax(-1)
    for kept in (top_p_filter(logits, p), min_p_filter(logits, min_p), top_k_filter(logits, k)):
        keep = kept > float("-inf")  # (B, V)
        assert keep.gather(1, top).all()  # the most likely token always survives
        assert torch.equal(kept[keep], logits[keep])  # survivors are unchanged
        # Whatever is kept, every more likely token is kept too.
        weakest_kept = probs.masked_fill(~keep, 2.0).amin(-1, keepdim=True)  # (B, 1)
        assert (keep | (probs < weakest_kept)).all()
    # top-p keeps at least p of the probability; dropping its weakest token would not.
    keep = top_p_filter(logits, p) > float("-inf")
    mass = (probs * keep).sum(-1)
    assert (mass >= p - 1e-5).all() or keep.sum() == keep.size(0)


def test_sample_draws_only_kept_tokens():
    logits = torch.zeros(1, V)
    logits[0, [3, 5]] = 10.0
    g = torch.Generator().manual_seed(0)
    draws = {sample(logits, top_k=2, generator=g).item() for _ in range(50)}
    assert draws == {3, 5}


# --------------------------------------------------------------------------------------------
# Stop sequences, streaming and text


def test_stop_sequences_end_a_row(gpt_pair):
    _, ours = gpt_pair
    idx, mask, _ = prompts((7, 4))
    free = generate(ours, idx, 12, attention_mask=mask)
    T = idx.size(1)
    stop = free[0, T + 2 : T + 4].tolist()  # row 0 produces these as its 3rd and 4th tokens
    # A row stops once its whole sequence (prompt included) ends with a stop sequence.
    n = next(n for n in range(1, 5) if free[0, T + n - 2 : T + n].tolist() == stop)
    out = generate(ours, idx, 12, attention_mask=mask, stop=[[97, 98], stop], pad_token_id=EOS)
    assert torch.equal(out[0, : T + n], free[0, : T + n])  # up to and including the stop
    assert (out[0, T + n :] == EOS).all()
    n = out.size(1) - T  # row 1 goes on unless it hits the stop sequence too
    assert torch.equal(out[1], free[1, : T + n]) or out[1, -1] == EOS


def test_streamer_and_stream_see_exactly_the_new_tokens(pair):
    _, ours = pair
    idx, mask, _ = prompts((6, 3))
    seen = []
    out = generate(ours, idx, 8, attention_mask=mask, streamer=seen.append)
    assert torch.equal(torch.stack(seen, dim=1), out[:, idx.size(1) :])
    streamed = list(stream(ours, idx, 8, attention_mask=mask))
    assert all(t.shape == (2,) for t in streamed)
    assert torch.equal(torch.stack(streamed, dim=1), out[:, idx.size(1) :])


class CharTokenizer:
    """Just enough of a Hugging Face tokenizer for `generate_text`: one id per character."""

    eos_token_id, pad_token_id = 0, 0

    def __call__(self, text):
        return {"input_ids": [ord(c) - 31 for c in text]}  # " " -> 1, ..., "~" -> 95

    def decode(self, ids, skip_special_tokens=False):
        ids = [i for i in ids if not (skip_special_tokens and i == self.eos_token_id)]
        return "".join(chr(i + 31) if 0 < i < 96 else "?" for i in ids)


def test_generate_text_pads_on_the_left_and_applies_stop_strings(gpt_pair):
    _, ours = gpt_pair
    tok = CharTokenizer()
    texts = ["Hello there", "Hi"]
    free = generate_text(ours, tok, texts, max_new_tokens=10)
    for text, out in zip(texts, free):
        ids = torch.tensor([tok(text)["input_ids"]])
        alone = generate(ours, ids, 10, eos_token_id=0)[0, ids.size(1) :].tolist()
        assert out == tok.decode(alone, skip_special_tokens=True)
    stop = free[0][3:5]  # a string that occurs in the first completion
    cut = generate_text(ours, tok, texts, max_new_tokens=10, stop=[stop])
    assert cut[0] == free[0].split(stop)[0] and stop not in cut[1]


def test_time_generation_returns_seconds_per_length(gpt_pair):
    _, ours = gpt_pair
    seconds = time_generation(ours, torch.tensor([[1, 2, 3]]), [1, 4], use_cache=True)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)


# --------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_gives_clear_errors(gpt_pair):
    _, ours = gpt_pair
    idx, mask, _ = prompts((5, 2))
    with pytest.raises(ValueError, match=r"prompt length 5 \+ max_new_tokens 60 exceeds.*64"):
        generate(ours, idx, 60)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        generate(ours, torch.tensor([1, 2, 3]), 2)
    with pytest.raises(ValueError, match="attention_mask must have idx's shape"):
        generate(ours, idx, 2, attention_mask=mask[:, 1:])
    with pytest.raises(ValueError, match="pad prompts on the left"):
        generate(ours, idx, 2, attention_mask=mask.flip(1))
    with pytest.raises(ValueError, match="pad_token_id"):
        generate(ours, idx, 2, attention_mask=mask, stop=[[1]])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        generate(ours, idx, 2, do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        top_k_filter(random_logits(0), 0)
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(random_logits(0), 1.5)
    with pytest.raises(ValueError, match="min_p"):
        min_p_filter(random_logits(0), -0.1)
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(ours, idx, 2, 0)
    with pytest.raises(ValueError, match="at least one token"):
        left_pad([[1], []], pad_id=0)


# --------------------------------------------------------------------------------------------
# SmolLM2-135M with its real weights

SMOL_PROMPTS = ["The capital of France is", "def fibonacci(n):"]


@pytest.fixture(scope="module")
def smollm2():
    from lmlib.pretrained import load_smollm2

    hf, tok = load_smollm2()
    chat = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                   tokenize=False, add_generation_prompt=True)  # fmt: skip
    return hf, tok, llama_from_smollm2(), SMOL_PROMPTS + [chat]


@pytest.mark.slow
def test_smollm2_greedy_matches_hugging_face_alone_and_batched(smollm2):
    hf, tok, ours, texts = smollm2
    rows = [tok(t)["input_ids"] for t in texts]
    for row in rows:
        idx = torch.tensor([row])
        want = hf_generate(hf, idx, torch.ones_like(idx), 32, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id)  # fmt: skip
        got = generate(ours, idx, 32, eos_token_id=tok.eos_token_id)
        print(repr(tok.decode(got[0, len(row) :])))
        assert torch.equal(got, want), (
            f"\nours {tok.decode(got[0])!r}\nHF   {tok.decode(want[0])!r}"
        )
    idx, mask = left_pad(rows, tok.pad_token_id)
    want = hf_generate(hf, idx, mask, 32, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id)  # fmt: skip
    got = generate(ours, idx, 32, attention_mask=mask, eos_token_id=tok.eos_token_id)
    assert torch.equal(got, want)


@pytest.mark.slow
def test_smollm2_beam_search_matches_hugging_face(smollm2):
    hf, tok, ours, texts = smollm2
    for text in texts:
        idx = torch.tensor([tok(text)["input_ids"]])
        want = hf_generate(hf, idx, torch.ones_like(idx), 20, num_beams=3,
                           eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id)  # fmt: skip
        got = beam_search(ours, idx, 20, 3, eos_token_id=tok.eos_token_id)
        print(repr(tok.decode(got[0, idx.size(1) :])))
        assert torch.equal(got, want), (
            f"\nours {tok.decode(got[0])!r}\nHF   {tok.decode(want[0])!r}"
        )


@pytest.mark.slow
def test_smollm2_generate_text_stops_at_a_stop_string(smollm2):
    _, tok, ours, texts = smollm2
    out = generate_text(ours, tok, texts, max_new_tokens=24, stop=["\n"])
    assert len(out) == 3 and all("\n" not in t for t in out)
    assert "5" in out[2] or "five" in out[2].lower(), out[2]
