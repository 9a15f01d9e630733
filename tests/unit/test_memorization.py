"""The memorization probe (lmlib.memorization).

References: lmlib's greedy `generate` with a KV cache, and a counting model whose greedy
continuations can be worked out by hand; bad input raises; the model's mode is restored.
"""

import pytest
import torch
import torch.nn as nn

from lmlib.generate import generate
from lmlib.memorization import memorization_rate, probe_memorization, verbatim_matches

V = 11


class Counter(nn.Module):
    """Predicts token + 1 (mod V) with certainty: it has 'memorized' counting."""

    def __init__(self):
        super().__init__()
        self.next = nn.Parameter(10.0 * torch.eye(V).roll(1, dims=1))  # row t: logits of t + 1

    def forward(self, idx):
        return self.next[idx]  # (B, T) -> (B, T, V)


def test_counting_model_reproduces_counting_but_not_noise():
    data = torch.tensor([0, 1, 2, 3, 4, 5, 6, 9, 8, 7])
    # prefix [0, 1], suffix [2, 3, 4]: all three reproduced
    # prefix [3, 4], suffix [5, 6, 9]: 5 and 6 right, then 7 predicted but 9 in the data
    # prefix [6, 9], suffix [8, 7]: 10 predicted, 8 in the data
    assert verbatim_matches(Counter(), data, [0], 2, 3).tolist() == [3]
    assert verbatim_matches(Counter(), data, [3, 0], 2, 3).tolist() == [2, 3]
    assert verbatim_matches(Counter(), data, [6], 2, 2).tolist() == [0]
    assert memorization_rate(Counter(), data, [0, 3, 1, 5], 2, 3) == 0.5  # starts 0 and 1


def test_probe_returns_the_prompts_continuations_and_matches():
    data = torch.tensor([0, 1, 2, 3, 4, 5, 6, 9, 8, 7])
    probe = probe_memorization(Counter(), data, [3, 0], 2, 3)
    assert probe.prompts.tolist() == [[3, 4], [0, 1]]
    assert probe.generated.tolist() == [[5, 6, 7], [2, 3, 4]]  # counting on
    assert probe.expected.tolist() == [[5, 6, 9], [2, 3, 4]]  # what the data holds
    assert probe.matching.tolist() == [2, 3] and probe.verbatim.tolist() == [False, True]
    assert probe.rate == 0.5
    # a mismatch early ends the leading run, even if later tokens agree again
    probe = probe_memorization(Counter(), torch.tensor([0, 1, 5, 3, 4]), [0], 2, 3)
    assert probe.generated.tolist() == [[2, 3, 4]] and probe.matching.tolist() == [0]


@torch.no_grad()
def test_verbatim_matches_agree_with_lmlib_greedy_generation(tiny_gpt):
    model = tiny_gpt
    data = torch.randint(0, V, (60,), generator=torch.Generator().manual_seed(4))
    starts = [0, 7, 20, 41]
    matches = verbatim_matches(model, data, starts, prefix_len=6, suffix_len=10)
    for s, m in zip(starts, matches.tolist()):
        out = generate(model, data[None, s : s + 6], max_new_tokens=10)[0, 6:]  # KV cache, greedy
        same = (out == data[s + 6 : s + 16]).long().cumprod(0).sum().item()
        assert m == same
    # the model is put back in the mode it came in
    model.train()
    verbatim_matches(model, data, starts, 6, 10)
    assert model.training


@pytest.mark.parametrize(
    "data, starts, prefix, suffix, match",
    [
        (torch.arange(10), [0], 0, 3, ">= 1"),
        (torch.arange(10), [0], 2, 0, ">= 1"),
        (torch.arange(10), [8], 2, 3, "start"),
        (torch.arange(10), [-1], 2, 3, "start"),
        (torch.arange(10), [], 2, 3, "start"),
        (torch.arange(10).reshape(2, 5), [0], 2, 2, "1-D"),
        (torch.rand(10), [0], 2, 2, "integer"),
    ],
)
def test_memorization_rejects_bad_input(data, starts, prefix, suffix, match):
    with pytest.raises(ValueError, match=match):
        verbatim_matches(Counter(), data, starts, prefix, suffix)
