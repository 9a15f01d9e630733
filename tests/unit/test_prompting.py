"""Few-shot prompting: demonstrations, and label-word scores with a prefix computed once,
which must equal scoring each full prompt from scratch."""

import pytest
import torch

from lmlib.data import LabeledSentence as S
from lmlib.finetune import label_word_logprobs
from lmlib.model import GPT, GPTConfig, Llama, LlamaConfig
from lmlib.prompting import demonstrations, few_shot_prefix, label_word_logprobs_with_prefix

V = 99


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
        return GPT(GPTConfig(block_size=256, vocab_size=V, n_layer=2, n_head=2, d_model=16))
    return Llama(LlamaConfig(vocab_size=V, block_size=256, n_layer=2, n_head=4, n_kv_head=2,
                             d_model=16, hidden=32))  # fmt: skip


POOL = [S("good fun", 1), S("dull", 0), S("a joy", 1), S("bad , bad", 0), S("fine", 1),
        S("awful", 0)]  # fmt: skip


@torch.no_grad()
@pytest.mark.parametrize("k", [0, 2, 4])
def test_prefix_scores_equal_full_prompt_scores(model, k):
    tok = SeamTokenizer()
    prefix = few_shot_prefix(demonstrations(POOL, k), (" no", " yes"), "{sentence} ->")
    prompts = ["so good ->", "meh ->", "x ->"]
    words = [" no", " yes", " maybe not"]  # one-token and many-token label words
    got = label_word_logprobs_with_prefix(model, tok, prefix, prompts, words, batch_size=2)
    want = label_word_logprobs(model, tok, [prefix + p for p in prompts], words)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert model.training  # restored


def test_demonstrations_are_balanced_seeded_and_checked():
    demos = demonstrations(POOL, 4, seed=3)
    assert sorted(ex.label for ex in demos) == [0, 0, 1, 1]
    assert demos == demonstrations(POOL, 4, seed=3)
    assert len(demonstrations(POOL, 5, balanced=False)) == 5
    with pytest.raises(ValueError, match="balanced"):
        demonstrations(POOL, 3)
    with pytest.raises(ValueError, match="between"):
        demonstrations(POOL, 7)
    assert few_shot_prefix([], (" no", " yes")) == ""


def test_bad_input(model):
    with pytest.raises(ValueError, match="no prompts"):
        label_word_logprobs_with_prefix(model, SeamTokenizer(), "x", [], [" a"])
    with pytest.raises(ValueError, match="at least one token"):
        label_word_logprobs_with_prefix(model, SeamTokenizer(), "x", ["y"], [""])
