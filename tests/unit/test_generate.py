"""`lmlib.generate` (the config, the decoding loop) and `lmlib.beam_search`.

With `transformers` installed, tiny random GPT-2 and Llama models (vocab 99, d_model 32, 2
layers) with the same weights as ours check greedy decoding, beam search and sampling
against Hugging Face's ``generate``, token for token. Without it, the tiny models of
``conftest.py`` check the loop itself: the cache against recomputing every step, a padded
batch against each prompt alone, the sliding window and the constrained quatrain of
Chapter 5 against the loops that chapter wrote by hand. Slow tests repeat greedy and beam
search with SmolLM2-135M's real weights.
"""

import pytest
import torch

from lmlib.beam_search import beam_search
from lmlib.generate import (
    GenerationConfig,
    generate,
    generate_text,
    left_pad,
    resolve,
    stream,
    time_generation,
)
from lmlib.sampling import FixedForm, sample

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
    transformers = pytest.importorskip("transformers")
    from lmlib.convert import gpt_from_hf

    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(
        vocab_size=V, n_positions=BLOCK, n_embd=C, n_layer=L, n_head=NH, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS,
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    return hf, gpt_from_hf(hf).eval()


@pytest.fixture(scope="module")
def llama_pair():
    transformers = pytest.importorskip("transformers")
    from lmlib.convert import llama_from_hf

    torch.manual_seed(0)
    hf_config = transformers.LlamaConfig(
        vocab_size=V, hidden_size=C, intermediate_size=64, num_hidden_layers=L,
        num_attention_heads=NH, num_key_value_heads=NKV, max_position_embeddings=BLOCK,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=EOS, eos_token_id=EOS,
        pad_token_id=EOS,
    )  # fmt: skip
    hf = transformers.LlamaForCausalLM(hf_config).eval()
    return hf, llama_from_hf(hf).eval()


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
# The config


def test_config_defaults_are_greedy_and_options_override_fields():
    config = GenerationConfig()
    assert (config.max_new_tokens, config.do_sample, config.num_beams) == (50, False, 1)
    sampled = config.replace(do_sample=True, top_p=0.9)
    assert sampled.top_p == 0.9 and config.top_p is None  # a copy: configs are not changed
    assert resolve(sampled, temperature=0.5) == sampled.replace(temperature=0.5)
    assert resolve(None) == GenerationConfig() and resolve(sampled) is sampled
    assert GenerationConfig(logits_processors=[abs]).logits_processors == (abs,)


@pytest.mark.parametrize(
    "field, value",
    [("max_new_tokens", -1), ("max_new_tokens", 2.0), ("do_sample", 1), ("temperature", 0.0),
     ("top_k", 0), ("top_k", True), ("top_p", 0.0), ("top_p", 1.5), ("min_p", -0.1),
     ("repetition_penalty", 0), ("logits_processors", [1]), ("num_beams", 0),
     ("length_penalty", "1"), ("eos_token_id", -1), ("eos_token_id", [1, "2"]),
     ("pad_token_id", 1.5), ("stop", [[]]), ("stop", [["a"]]), ("stop_strings", [""]),
     ("stop_strings", [[1]]), ("use_cache", None), ("sliding_window", 0)],
)  # fmt: skip
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be"):
        GenerationConfig(**{field: value})


def test_config_rejects_inconsistent_settings_and_unknown_names():
    with pytest.raises(ValueError, match="pad_token_id"):
        GenerationConfig(stop=[[1]])
    assert GenerationConfig(stop=[[1]], eos_token_id=0).stop == [[1]]
    with pytest.raises(ValueError, match="do_sample=False"):
        GenerationConfig(num_beams=2, do_sample=True)
    with pytest.raises(TypeError, match=r"unknown generation option\(s\) \['top_q'\]"):
        GenerationConfig().replace(top_q=0.9)
    with pytest.raises(TypeError, match="pass max_new_tokens=... by name"):
        resolve(12)


# --------------------------------------------------------------------------------------------
# Greedy decoding, the cache and padding (against Hugging Face)


@pytest.mark.parametrize("lengths", [(6,), (7, 4, 1)])
@pytest.mark.parametrize("penalty", [None, 1.5])
def test_greedy_matches_hugging_face(pair, lengths, penalty):
    hf, ours = pair
    idx, mask, _ = prompts(lengths)
    want = hf_generate(hf, idx, mask, 12, repetition_penalty=penalty)
    config = GenerationConfig(max_new_tokens=12, eos_token_id=EOS, repetition_penalty=penalty)
    got = generate(ours, idx, config, attention_mask=mask)
    assert torch.equal(got, want), f"\nours {got}\nHF   {want}"


def test_sampling_matches_hugging_face_with_the_same_seed(llama_pair):
    """Both draw with torch.multinomial from the global generator: same seed, same tokens."""
    hf, ours = llama_pair
    idx, mask, _ = prompts((6,))
    settings = dict(do_sample=True, temperature=0.8, top_k=20, top_p=0.9, min_p=0.05,
                    repetition_penalty=1.3)  # fmt: skip
    torch.manual_seed(123)
    want = hf_generate(hf, idx, mask, 15, **settings)
    torch.manual_seed(123)
    got = generate(ours, idx, attention_mask=mask, max_new_tokens=15, eos_token_id=EOS,
                   **settings)  # fmt: skip
    assert torch.equal(got, want), f"\nours {got}\nHF   {want}"


def test_hugging_face_logits_processors_plug_in(gpt_pair):
    """A processor has Hugging Face's signature (tokens, logits), so theirs work here."""
    hf, ours = gpt_pair
    hf_lp = pytest.importorskip("transformers.generation.logits_process")
    idx, mask, _ = prompts((6,), seed=2)
    want = hf_generate(hf, idx, mask, 20, no_repeat_ngram_size=2)
    got = generate(ours, idx, max_new_tokens=20, eos_token_id=EOS,
                   logits_processors=[hf_lp.NoRepeatNGramLogitsProcessor(2)])  # fmt: skip
    assert torch.equal(got, want)
    assert not torch.equal(got, generate(ours, idx, max_new_tokens=20, eos_token_id=EOS))


@pytest.mark.parametrize("batched", [False, True])
def test_cache_gives_the_same_tokens_as_recomputing(tiny_model, batched):
    idx, mask, _ = prompts((7, 4, 1) if batched else (7,))
    a = generate(tiny_model, idx, attention_mask=mask, max_new_tokens=20, use_cache=True)
    b = generate(tiny_model, idx, attention_mask=mask, max_new_tokens=20, use_cache=False)
    assert a.shape == (idx.size(0), idx.size(1) + 20)
    assert torch.equal(a, b)


@pytest.mark.parametrize("use_cache", [True, False])
def test_each_row_of_a_padded_batch_equals_its_prompt_alone(tiny_model, use_cache):
    idx, mask, rows = prompts((7, 4, 1))
    # An eos that one row actually produces, so that rows finish at different steps.
    eos = generate(tiny_model, idx[1:2, -4:], max_new_tokens=3)[0, -1].item()
    config = GenerationConfig(max_new_tokens=10, eos_token_id=eos, pad_token_id=EOS,
                              use_cache=use_cache)  # fmt: skip
    batch = generate(tiny_model, idx, config, attention_mask=mask)
    T = idx.size(1)
    for b, row in enumerate(rows):
        alone = generate(tiny_model, torch.tensor([row]), config, pad_token_id=None)
        n = alone.size(1) - len(row)
        assert batch[b, T : T + n].tolist() == alone[0, len(row) :].tolist()
        assert (batch[b, T + n :] == EOS).all()  # finished rows are padded
    assert (batch[1, T:] == eos).any() and batch[1, -1] == EOS  # row 1 stopped early


@pytest.mark.parametrize("do_sample", [False, True])
def test_a_repeated_prompt_runs_once_and_finished_rows_leave_the_batch(tiny_model, do_sample):
    """The reference runs every row at every step (use_cache=False recomputes the batch)."""
    idx, mask, _ = prompts((7, 4, 1))
    pick = torch.tensor([0, 1, 1, 2, 0, 1, 2, 2])  # 8 rows, 3 distinct prompts
    idx, mask, T = idx[pick], mask[pick], idx.size(1)

    def finish_row_b_after_b_tokens(seq, logits):  # row b: eos as its token number b + 1
        row = seq.size(1) - T
        logits[:, 98] = float("-inf")  # eos nowhere else
        if row < len(logits):
            logits[row] = float("-inf")
            logits[row, 98] = 0.0
        return logits

    config = GenerationConfig(max_new_tokens=12, eos_token_id=98, pad_token_id=EOS,
                              do_sample=do_sample, top_p=0.9 if do_sample else None,
                              logits_processors=[finish_row_b_after_b_tokens])  # fmt: skip
    rows_run = []
    hook = tiny_model.register_forward_pre_hook(lambda m, args: rows_run.append(len(args[0])))
    g = torch.Generator().manual_seed(0)
    got = generate(tiny_model, idx, config, attention_mask=mask, generator=g)
    hook.remove()
    g = torch.Generator().manual_seed(0)
    want = generate(tiny_model, idx, config, attention_mask=mask, generator=g, use_cache=False)
    assert torch.equal(got, want)
    assert [(got[b, T:] == 98).nonzero().flatten().tolist() for b in range(8)] == [
        [b] for b in range(8)]  # fmt: skip
    # the prompt pass runs the 3 distinct prompts; 6 rows left after 2 finished, 4 after 4...
    assert rows_run == [3, 8, 6, 6, 4, 3, 2, 1]


def test_generation_ends_when_every_row_is_finished(tiny_gpt):
    idx = torch.tensor([[5, 6, 7]])
    first = generate(tiny_gpt, idx, max_new_tokens=1)[0, -1].item()
    out = generate(tiny_gpt, idx, max_new_tokens=10, eos_token_id=[98, first])  # several ids
    assert out.tolist() == [[5, 6, 7, first]]


def test_sampling_is_reproducible_with_a_generator(tiny_model):
    idx, mask, _ = prompts((5, 2))
    config = GenerationConfig(max_new_tokens=15, do_sample=True, temperature=1.5)

    def run(seed, use_cache=True):
        g = torch.Generator().manual_seed(seed)
        return generate(tiny_model, idx, config, attention_mask=mask, generator=g,
                        use_cache=use_cache)  # fmt: skip

    assert torch.equal(run(0), run(0))
    assert torch.equal(run(0), run(0, use_cache=False))
    assert not torch.equal(run(0), run(1))


# --------------------------------------------------------------------------------------------
# Chapter 5's hand-written loops, now one call each


@torch.no_grad()
def sliding_sample_by_hand(model, prompt, n, seed):
    """Chapter 5's Shakespeare sampler as it was written by hand: the model reads at most
    its last block_size tokens, so the text grows past the context."""
    block_size = model.config.block_size
    idx = torch.tensor([prompt])
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        logits = model(idx[:, -block_size:]).logits[:, -1]  # (1, V)
        idx = torch.cat([idx, sample(logits, generator=g)[:, None]], dim=1)
    return idx


@pytest.mark.parametrize("use_cache", [True, False])
def test_sliding_window_gives_the_tokens_of_the_hand_written_loop(tiny_model, use_cache):
    block_size = tiny_model.config.block_size
    n = 2 * block_size  # the window slides for half of the steps
    for seed in range(2):
        want = sliding_sample_by_hand(tiny_model, [1], n, seed)
        g = torch.Generator().manual_seed(seed)
        got = generate(tiny_model, torch.tensor([[1]]), max_new_tokens=n, do_sample=True,
                       sliding_window=block_size, use_cache=use_cache, generator=g)  # fmt: skip
        assert torch.equal(got, want), seed


def test_a_sliding_window_changes_nothing_while_the_text_fits(tiny_model):
    idx, mask, _ = prompts((7, 4, 1))
    plain = generate(tiny_model, idx, attention_mask=mask, max_new_tokens=20)
    window = tiny_model.config.block_size
    slid = generate(tiny_model, idx, attention_mask=mask, max_new_tokens=20, sliding_window=window)
    assert torch.equal(plain, slid)


def test_a_short_window_reads_only_the_last_tokens(tiny_gpt):
    """With a window of 4, every step is the model's prediction from the last 4 tokens."""
    idx = torch.tensor([[5, 6, 7, 8, 9, 10]])
    for use_cache in (True, False):
        out = generate(tiny_gpt, idx, max_new_tokens=8, sliding_window=4, use_cache=use_cache)
        for t in range(idx.size(1), out.size(1)):
            window = out[:, t - 4 : t]
            assert out[0, t] == tiny_gpt(window).logits[0, -1].argmax(), (use_cache, t)


@torch.no_grad()
def quatrain_by_hand(model, first, seed, constrained, hanzi, comma, stop):
    """Chapter 5's constrained quatrain sampler as it was written by hand: a line break and
    a first character, then 23 tokens; punctuation forced at positions 5, 11, 17 and 23."""
    block_size = model.config.block_size
    g = torch.Generator().manual_seed(seed)
    idx = torch.tensor([[NEWLINE, first]])
    for pos in range(1, 24):  # position 0 is the given first character
        logits = model(idx[:, -block_size:]).logits[:, -1]  # (1, V)
        if constrained:
            allowed = torch.zeros_like(hanzi)
            if pos in (5, 17):
                allowed[comma] = True
            elif pos in (11, 23):
                allowed[stop] = True
            else:
                allowed = hanzi
            logits = logits.masked_fill(~allowed, float("-inf"))
        token = sample(logits, temperature=0.8, top_k=50, generator=g)
        idx = torch.cat([idx, token[:, None]], dim=1)
    return idx


NEWLINE, COMMA, STOP = 1, 2, 3


def test_fixed_form_gives_the_tokens_of_the_hand_written_quatrain_loop(tiny_model):
    hanzi = torch.arange(V) >= 10  # stand-ins: tokens 10-98 are characters
    form = FixedForm(([hanzi] * 5 + [COMMA] + [hanzi] * 5 + [STOP]) * 2, start=1)
    config = GenerationConfig(max_new_tokens=23, do_sample=True, temperature=0.8, top_k=50)
    for seed, first in enumerate([10, 42, 77]):
        for constrained in (True, False):
            want = quatrain_by_hand(tiny_model, first, seed, constrained, hanzi, COMMA, STOP)
            g = torch.Generator().manual_seed(seed)
            got = generate(tiny_model, torch.tensor([[NEWLINE, first]]), config, generator=g,
                           logits_processors=[form] if constrained else [])  # fmt: skip
            assert torch.equal(got, want), (seed, constrained)
    poem = generate(tiny_model, torch.tensor([[NEWLINE, 10]]), config, logits_processors=[form],
                    generator=torch.Generator().manual_seed(0))[0, 1:]  # fmt: skip
    assert poem[[5, 17]].tolist() == [COMMA, COMMA] and poem[[11, 23]].tolist() == [STOP, STOP]
    assert (poem[[i for i in range(24) if i % 6 != 5]] >= 10).all()


def test_processors_apply_in_greedy_decoding_too(tiny_gpt):
    seen = []

    def ban_five(tokens, logits):
        seen.append(tokens.shape)
        return logits.index_fill(-1, torch.tensor([5]), float("-inf"))

    idx = torch.tensor([[5, 5, 5]])
    out = generate(tiny_gpt, idx, max_new_tokens=6, logits_processors=[ban_five])
    assert 5 not in out[0, 3:].tolist()
    assert seen == [(1, 3 + i) for i in range(6)]  # the whole sequence so far, every step


def test_the_text_a_processor_saw_stays_as_it_was(tiny_model):
    """The loop writes tokens into one preallocated buffer; what a processor was handed
    must not change under it later (a processor may keep it, e.g. to log the text)."""
    kept = []

    def keep(tokens, logits):
        kept.append((tokens, tokens.clone()))
        return logits

    idx, mask, _ = prompts((5, 2))
    out = generate(tiny_model, idx, max_new_tokens=6, attention_mask=mask,
                   logits_processors=[keep])  # fmt: skip
    assert [t.shape[1] for t, _ in kept] == [5 + i for i in range(6)]
    for i, (tokens, copy) in enumerate(kept):
        assert torch.equal(tokens, copy) and torch.equal(tokens, out[:, : 5 + i])


# --------------------------------------------------------------------------------------------
# Beam search


@pytest.mark.parametrize("num_beams", [2, 3])
@pytest.mark.parametrize("lengths", [(6,), (7, 4, 1)])
def test_beam_search_matches_hugging_face(pair, num_beams, lengths):
    hf, ours = pair
    idx, mask, _ = prompts(lengths)
    for eos in (EOS, None):
        want = hf_generate(hf, idx, mask, 12, num_beams=num_beams, eos_token_id=eos)
        config = GenerationConfig(max_new_tokens=12, num_beams=num_beams, eos_token_id=eos)
        got = beam_search(ours, idx, config, attention_mask=mask)
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
        got = beam_search(ours, i, attention_mask=m, max_new_tokens=15, num_beams=3,
                          eos_token_id=eos, length_penalty=length_penalty)  # fmt: skip
        assert torch.equal(got, want), f"eos {eos}, penalty {length_penalty}:\n{got}\n{want}"
    # These settings do end hypotheses early: the lone prompt stops after 5 tokens.
    short = beam_search(ours, idx[2:, -1:], max_new_tokens=15, num_beams=3, eos_token_id=52)
    assert short.size(1) == 6 and short[0, -1] == 52


def test_beam_search_cache_and_one_beam(tiny_model):
    idx, mask, _ = prompts((5, 3))
    config = GenerationConfig(max_new_tokens=10, num_beams=3)
    a = beam_search(tiny_model, idx, config, attention_mask=mask, use_cache=True)
    b = beam_search(tiny_model, idx, config, attention_mask=mask, use_cache=False)
    assert torch.equal(a, b)
    # One beam is greedy decoding.
    greedy = generate(tiny_model, idx, max_new_tokens=10, attention_mask=mask)
    one = beam_search(tiny_model, idx, config, num_beams=1, attention_mask=mask)
    assert torch.equal(one, greedy)


# --------------------------------------------------------------------------------------------
# Stop sequences, streaming and text


def test_stop_sequences_end_a_row(tiny_gpt):
    idx, mask, _ = prompts((7, 4))
    free = generate(tiny_gpt, idx, attention_mask=mask, max_new_tokens=12)
    T = idx.size(1)
    stop = free[0, T + 2 : T + 4].tolist()  # row 0 produces these as its 3rd and 4th tokens
    # A row stops once its whole sequence (prompt included) ends with a stop sequence.
    n = next(n for n in range(1, 5) if free[0, T + n - 2 : T + n].tolist() == stop)
    out = generate(tiny_gpt, idx, attention_mask=mask, max_new_tokens=12,
                   stop=[[97, 98], stop], pad_token_id=EOS)  # fmt: skip
    assert torch.equal(out[0, : T + n], free[0, : T + n])  # up to and including the stop
    assert (out[0, T + n :] == EOS).all()
    n = out.size(1) - T  # row 1 goes on unless it hits the stop sequence too
    assert torch.equal(out[1], free[1, : T + n]) or out[1, -1] == EOS


def test_streamer_and_stream_see_exactly_the_new_tokens(tiny_model):
    idx, mask, _ = prompts((6, 3))
    seen = []
    out = generate(tiny_model, idx, attention_mask=mask, max_new_tokens=8, streamer=seen.append)
    assert torch.equal(torch.stack(seen, dim=1), out[:, idx.size(1) :])
    streamed = list(stream(tiny_model, idx, attention_mask=mask, max_new_tokens=8))
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


def test_generate_text_pads_on_the_left_and_applies_stop_strings(tiny_gpt):
    tok = CharTokenizer()
    texts = ["Hello there", "Hi"]
    free = generate_text(tiny_gpt, tok, texts, max_new_tokens=10)
    for text, out in zip(texts, free):
        ids = torch.tensor([tok(text)["input_ids"]])
        alone = generate(tiny_gpt, ids, max_new_tokens=10, eos_token_id=0)[0, ids.size(1) :]
        assert out == tok.decode(alone.tolist(), skip_special_tokens=True)
    stop = free[0][3:5]  # a string that occurs in the first completion
    cut = generate_text(tiny_gpt, tok, texts, GenerationConfig(max_new_tokens=10),
                        stop_strings=[stop])  # fmt: skip
    assert cut[0] == free[0].split(stop)[0] and stop not in cut[1]
    with pytest.raises(ValueError, match="list of strings"):
        generate_text(tiny_gpt, tok, "Hello")


def test_time_generation_returns_seconds_per_length(tiny_gpt):
    seconds = time_generation(tiny_gpt, torch.tensor([[1, 2, 3]]), [1, 4], use_cache=False)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)


# --------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_gives_clear_errors(tiny_gpt):
    idx, mask, _ = prompts((5, 2))
    block = tiny_gpt.config.block_size
    with pytest.raises(ValueError, match=rf"length 5 \+ max_new_tokens 60 exceeds.*{block}"):
        generate(tiny_gpt, idx, max_new_tokens=60)
    with pytest.raises(ValueError, match=f"sliding_window {block + 1} exceeds"):
        generate(tiny_gpt, idx, max_new_tokens=2, sliding_window=block + 1)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        generate(tiny_gpt, torch.tensor([1, 2, 3]), max_new_tokens=2)
    with pytest.raises(ValueError, match="attention_mask must have idx's shape"):
        generate(tiny_gpt, idx, attention_mask=mask[:, 1:], max_new_tokens=2)
    with pytest.raises(ValueError, match="pad prompts on the left"):
        generate(tiny_gpt, idx, attention_mask=mask.flip(1), max_new_tokens=2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        generate(tiny_gpt, idx, max_new_tokens=2, do_sample=True, temperature=0.0)
    with pytest.raises(TypeError, match="by name"):
        generate(tiny_gpt, idx, 2)
    with pytest.raises(ValueError, match="num_beams must be"):
        beam_search(tiny_gpt, idx, max_new_tokens=2, num_beams=0)
    with pytest.raises(ValueError, match="beam_search does not support sliding_window"):
        beam_search(tiny_gpt, idx, max_new_tokens=2, num_beams=2, sliding_window=4)
    with pytest.raises(ValueError, match="call lmlib.beam_search.beam_search"):
        next(stream(tiny_gpt, idx, max_new_tokens=2, num_beams=2))
    with pytest.raises(ValueError, match="call lmlib.beam_search.beam_search"):
        generate(tiny_gpt, idx, max_new_tokens=2, num_beams=2)
    with pytest.raises(ValueError, match="at least one token"):
        left_pad([[1], []], pad_id=0)


# --------------------------------------------------------------------------------------------
# SmolLM2-135M with its real weights

SMOL_PROMPTS = ["The capital of France is", "def fibonacci(n):"]


@pytest.fixture(scope="module")
def smollm2():
    from lmlib.pretrained import llama_from_smollm2, load_smollm2

    hf, tok = load_smollm2()
    chat = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                   tokenize=False, add_generation_prompt=True)  # fmt: skip
    return hf, tok, llama_from_smollm2(), SMOL_PROMPTS + [chat]


@pytest.mark.slow
def test_smollm2_greedy_matches_hugging_face_alone_and_batched(smollm2):
    hf, tok, ours, texts = smollm2
    rows = [tok(t)["input_ids"] for t in texts]
    config = GenerationConfig(max_new_tokens=32, eos_token_id=tok.eos_token_id)
    for row in rows:
        idx = torch.tensor([row])
        want = hf_generate(hf, idx, torch.ones_like(idx), 32, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id)  # fmt: skip
        got = generate(ours, idx, config)
        print(repr(tok.decode(got[0, len(row) :])))
        assert torch.equal(got, want), (
            f"\nours {tok.decode(got[0])!r}\nHF   {tok.decode(want[0])!r}"
        )
    idx, mask = left_pad(rows, tok.pad_token_id)
    want = hf_generate(hf, idx, mask, 32, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id)  # fmt: skip
    got = generate(ours, idx, config, attention_mask=mask)
    assert torch.equal(got, want)


@pytest.mark.slow
def test_smollm2_beam_search_matches_hugging_face(smollm2):
    hf, tok, ours, texts = smollm2
    for text in texts:
        idx = torch.tensor([tok(text)["input_ids"]])
        want = hf_generate(hf, idx, torch.ones_like(idx), 20, num_beams=3,
                           eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.pad_token_id)  # fmt: skip
        got = beam_search(ours, idx, max_new_tokens=20, num_beams=3,
                          eos_token_id=tok.eos_token_id)  # fmt: skip
        print(repr(tok.decode(got[0, idx.size(1) :])))
        assert torch.equal(got, want), (
            f"\nours {tok.decode(got[0])!r}\nHF   {tok.decode(want[0])!r}"
        )


@pytest.mark.slow
def test_smollm2_generate_text_stops_at_a_stop_string(smollm2):
    _, tok, ours, texts = smollm2
    out = generate_text(ours, tok, texts, max_new_tokens=24, stop_strings=["\n"])
    assert len(out) == 3 and all("\n" not in t for t in out)
    assert "5" in out[2] or "five" in out[2].lower(), out[2]


def test_float_or_out_of_range_prompts_are_refused_not_rounded(tiny_gpt):
    idx, _, _ = prompts((5, 2))
    with pytest.raises(TypeError, match="idx must hold integer token ids"):
        generate(tiny_gpt, idx.float(), max_new_tokens=2)  # used to return float "ids"
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 99\), got min 0 and max 99"):
        generate(tiny_gpt, idx.clamp(max=0) + torch.tensor([[0] * 4 + [99]]), max_new_tokens=2)
    with pytest.raises(TypeError, match="model must be lmlib's GPT or Llama"):
        generate(torch.nn.Linear(2, 2), idx, max_new_tokens=2)
    with pytest.raises(TypeError, match="generator must be None or a torch.Generator"):
        generate(tiny_gpt, idx, max_new_tokens=2, do_sample=True, generator=0)
    with pytest.raises(TypeError, match="streamer must be None or a function"):
        generate(tiny_gpt, idx, max_new_tokens=2, streamer="print")
    with pytest.raises(ValueError, match="repeats must be an int >= 1, got 0"):
        time_generation(tiny_gpt, idx, [1], repeats=0)  # was statistics.StatisticsError
    with pytest.raises(TypeError, match="lengths must be a list of ints"):
        time_generation(tiny_gpt, idx, 4)
    with pytest.raises(ValueError, match="prompts must be a non-empty list of strings"):
        generate_text(tiny_gpt, None, "a single string")
    with pytest.raises(ValueError, match="pad_id must be an int >= 0, got -1"):
        left_pad([[1]], pad_id=-1)
