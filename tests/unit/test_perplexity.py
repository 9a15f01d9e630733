"""Perplexity over a sliding window (lmlib.perplexity).

References: a direct exp(mean cross-entropy), a brute-force block-by-block computation and
Hugging Face's loss; a model with constant logits has perplexity exactly V; bad input
raises. One slow test runs the real SmolLM2, ours and Hugging Face's.
"""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.perplexity import logits_of, sliding_window_perplexity

V = 11  # ConstantLogits' vocabulary; the tiny_gpt fixture (conftest) has its own


class ConstantLogits(nn.Module):
    """Every next token equally likely: cross-entropy ln V, perplexity exactly V."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, idx):
        return torch.zeros(*idx.shape, V) + self.dummy  # (B, T, V)


def direct_perplexity(model, ids):
    logits = model(ids[None, :-1]).logits[0]  # (T - 1, V)
    return math.exp(F.cross_entropy(logits, ids[1:]).item())


def test_uniform_model_has_perplexity_v():
    ids = torch.randint(0, V, (50,))
    for window, stride in [(50, None), (8, 8), (8, 3), (5, 1)]:
        assert sliding_window_perplexity(ConstantLogits(), ids, window, stride) == pytest.approx(V)


@torch.no_grad()
def test_one_window_is_exp_of_the_mean_cross_entropy(tiny_gpt):
    model = tiny_gpt
    ids = torch.randint(0, V, (30,), generator=torch.Generator().manual_seed(1))
    want = direct_perplexity(model, ids)
    assert sliding_window_perplexity(model, ids, window=32) == pytest.approx(want, rel=1e-6)
    assert sliding_window_perplexity(model, ids.tolist(), window=29) == pytest.approx(want, 1e-6)


@torch.no_grad()
@pytest.mark.parametrize("window, stride", [(8, 1), (8, 3), (8, 8), (5, 2)])
def test_each_token_is_scored_once_from_the_window_before_its_block(tiny_gpt, window, stride):
    model = tiny_gpt
    ids = torch.randint(0, V, (40,), generator=torch.Generator().manual_seed(2))
    nll = 0.0
    for t0 in range(1, len(ids), stride):  # brute force: one block at a time
        t1 = min(t0 + stride, len(ids))
        for t in range(t0, t1):
            begin = max(0, t1 - 1 - window)
            context = ids[begin:t]
            assert len(context) >= min(t, window - stride + 1)  # the promised context
            logits = model(ids[None, begin : t1 - 1]).logits[0, t - 1 - begin]
            nll -= logits.log_softmax(-1)[ids[t]].item()
    want = math.exp(nll / (len(ids) - 1))
    got = sliding_window_perplexity(model, ids, window, stride)
    assert got == pytest.approx(want, rel=1e-5)


@torch.no_grad()
def test_perplexity_matches_hugging_face_loss():
    transformers = pytest.importorskip("transformers")
    HFLlamaConfig, LlamaForCausalLM = transformers.LlamaConfig, transformers.LlamaForCausalLM

    torch.manual_seed(0)
    config = HFLlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=64)  # fmt: skip
    hf = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, V, (40,), generator=torch.Generator().manual_seed(3))
    want = math.exp(hf(ids[None], labels=ids[None]).loss.item())
    assert sliding_window_perplexity(hf, ids, window=64) == pytest.approx(want, rel=1e-5)
    # a shorter window can only lose context: on this random model, just check it runs
    assert sliding_window_perplexity(hf, ids, window=8, stride=4) > 1


@pytest.mark.parametrize(
    "ids, window, stride, match",
    [
        (torch.arange(10), 4, 5, "stride"),
        (torch.arange(10), 4, 0, "stride"),
        (torch.arange(10).reshape(2, 5), 4, 2, "1-D"),
        (torch.arange(1), 4, 2, "at least 2"),
        (torch.rand(10), 4, 2, "integer"),
    ],
)
def test_perplexity_rejects_bad_input(ids, window, stride, match):
    with pytest.raises(ValueError, match=match):
        sliding_window_perplexity(ConstantLogits(), ids, window, stride)


def test_logits_of_reads_any_output(tiny_gpt):
    logits = torch.randn(1, 2, V)
    assert logits_of(logits) is logits
    output = tiny_gpt(torch.tensor([[1, 2]]))
    assert logits_of(output) is output.logits


@pytest.mark.slow
@torch.no_grad()
def test_smollm2_perplexity_ours_and_hugging_face():
    from lmlib.pretrained import llama_from_smollm2, load_smollm2

    hf, tok = load_smollm2()
    text = "The capital of France is Paris. It is known for the Eiffel Tower and the Louvre."
    ids = tok(text, return_tensors="pt").input_ids[0]
    want = math.exp(hf(ids[None], labels=ids[None]).loss.item())
    assert sliding_window_perplexity(hf, ids, window=len(ids)) == pytest.approx(want, rel=1e-4)
    ours = llama_from_smollm2()
    assert sliding_window_perplexity(ours, ids, window=len(ids)) == pytest.approx(want, rel=1e-3)
