"""Classification by label words (lmlib.classify) on tiny random models.

References: each score computed one prompt and one word at a time with a plain forward pass;
scores with a shared, cached prefix equal those of each full prompt from scratch (also when
BPE-like tokenization changes at the seam); a Hugging Face model, which takes no KVCache,
scores the full prompts. Bad input
raises, and the model's mode is restored even on error.
"""

import pytest
import torch

from lmlib.classify import classify, label_word_logprobs, right_pad
from lmlib.data import LabeledSentence as S
from lmlib.model import GPT, GPTConfig, Llama, LlamaConfig
from lmlib.prompting import demonstrations, few_shot_prefix

V = 99


class CharTokenizer:
    """One token per character (code point mod V), so " yes" is four tokens."""

    def encode(self, text, add_special_tokens=True):
        return [ord(c) % V for c in text]


class SeamTokenizer:
    """One token per character, except that a text *ending* in a blank line gets one token
    for it, as byte-level BPE does: the prefix alone tokenizes differently at the seam."""

    def encode(self, text, add_special_tokens=True):
        ids = [ord(c) % (V - 1) for c in text]
        return ids[:-2] + [V - 1] if text.endswith("\n\n") else ids


@pytest.fixture(params=["gpt", "llama"])
def model(request):
    torch.manual_seed(0)
    if request.param == "gpt":
        return GPT(GPTConfig(block_size=256, vocab_size=V, n_layers=2, n_heads=2, d_model=16))
    return Llama(LlamaConfig(vocab_size=V, block_size=256, n_layers=2, n_heads=4, n_kv_heads=2,
                             d_model=16, hidden=32))  # fmt: skip


def one_by_one(model, tok, prompts, words):
    """The reference: one forward pass per (prompt, word), no batching, no padding."""
    want = torch.zeros(len(prompts), len(words))
    for i, p in enumerate(prompts):
        for k, w in enumerate(words):
            p_ids, w_ids = tok.encode(p), tok.encode(w)
            logp = model(torch.tensor([p_ids + w_ids])).logits[0].log_softmax(-1)
            want[i, k] = sum(logp[len(p_ids) - 1 + j, t] for j, t in enumerate(w_ids))
    return want


@torch.no_grad()
def test_label_word_logprobs_match_a_manual_computation(model):
    tok = CharTokenizer()
    prompts, words = ["ab", "hello there", "x", "ab"], [" no", " yes", "!"]  # "ab" twice
    got = label_word_logprobs(model, tok, prompts, words, batch_size=2)
    assert got.shape == (4, 3)
    torch.testing.assert_close(got, one_by_one(model, tok, prompts, words), atol=1e-5, rtol=0)
    assert torch.equal(got[0], got[3])  # the same prompt ran once, scored for both rows
    assert torch.equal(classify(model, tok, prompts, words), got.argmax(-1))


@torch.no_grad()
def test_the_output_layer_runs_only_where_a_word_is_scored(model):
    rows = []
    head = model.lm_head.register_forward_hook(lambda m, args, out: rows.append(args[0].shape))
    prompts, words = ["ab", "hello there", "x"], [" no", "!"]  # 3 and 1 tokens
    got = label_word_logprobs(model, CharTokenizer(), prompts, words, batch_size=8)
    head.remove()
    # " no" needs the prompt's last position and its own first two; "!" only the first
    assert rows == [(3 * (3 + 1), 16)]  # (N, C): 12 positions, not 3 prompts x 14 tokens
    torch.testing.assert_close(got, one_by_one(model, CharTokenizer(), prompts, words),
                               atol=1e-5, rtol=0)  # fmt: skip


POOL = [S("good fun", 1), S("dull", 0), S("a joy", 1), S("bad , bad", 0), S("fine", 1),
        S("awful", 0)]  # fmt: skip


@torch.no_grad()
@pytest.mark.parametrize("k", [0, 2, 4])
def test_prefix_scores_equal_full_prompt_scores(model, k):
    tok = SeamTokenizer()
    prefix = few_shot_prefix(demonstrations(POOL, k), (" no", " yes"), "{sentence} ->")
    prompts = ["so good ->", "meh ->", "x ->"]
    words = [" no", " yes", " maybe not"]  # one-token and many-token label words
    model.train()
    got = label_word_logprobs(model, tok, prompts, words, prefix=prefix, batch_size=2)
    want = label_word_logprobs(model, tok, [prefix + p for p in prompts], words)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert model.training  # restored
    full = one_by_one(model.eval(), tok, [prefix + p for p in prompts], words)
    torch.testing.assert_close(got, full, atol=1e-5, rtol=0)
    assert torch.equal(classify(model, tok, prompts, words, prefix=prefix), got.argmax(-1))


@torch.no_grad()
def test_a_model_without_a_cache_scores_the_full_prompts():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False)).eval()  # fmt: skip
    tok, prefix = SeamTokenizer(), "good fun -> yes\n\n"
    prompts, words = ["so good ->", "meh ->"], [" no", " yes"]
    got = label_word_logprobs(hf, tok, prompts, words, prefix=prefix)  # no KVCache there
    full = [prefix + p for p in prompts]
    assert torch.equal(got, label_word_logprobs(hf, tok, full, words))
    torch.testing.assert_close(got, one_by_one(hf, tok, full, words), atol=1e-5, rtol=0)


def test_right_pad():
    assert right_pad([[1, 2], [3], (4, 5, 6)]).tolist() == [[1, 2, 0], [3, 0, 0], [4, 5, 6]]
    assert right_pad([[7]], fill=-100).dtype == torch.long
    with pytest.raises(ValueError, match="seqs must be a non-empty list of token-id lists"):
        right_pad([])


def test_bad_input_and_the_mode_is_restored_on_error(model):
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="no prompts"):
        label_word_logprobs(model, tok, [], [" a"], prefix="x")
    with pytest.raises(ValueError, match="at least one token"):
        label_word_logprobs(model, tok, ["y"], ["", " yes"])
    model.train()
    with pytest.raises(ValueError, match="block_size"):  # 300 tokens > block_size 256
        label_word_logprobs(model, tok, ["x" * 300], [" a"])
    assert model.training
