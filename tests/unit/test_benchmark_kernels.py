"""benchmarks/train_char_gpt.py's ``--kernels by-hand``: the op-by-op LayerNorm and GELU that
Chapter 4 writes out, in place of the book's fused ones, the same function with the same
weights, forward and backward."""

import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from lmlib.attention import GELUMLP, LayerNorm
from lmlib.model import GPT, GPTConfig

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_char_gpt.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_char_gpt", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines; main() runs only as a script
    return module


def tiny_gpt(bias=True):
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, vocab_size=23, n_layers=2, n_heads=2, d_model=16,
                         bias=bias))  # fmt: skip


@pytest.mark.parametrize("bias", [True, False])
def test_by_hand_kernels_compute_the_same_function_and_gradients(bench, bias):
    ours = tiny_gpt(bias)
    by_hand = bench.by_hand_kernels(copy.deepcopy(ours))
    kinds = [type(m) for m in by_hand.modules()]
    assert kinds.count(bench.ByHandLayerNorm) == 5 and kinds.count(bench.ByHandGELUMLP) == 2
    assert LayerNorm not in kinds and GELUMLP not in kinds  # every one was swapped
    assert [n for n, _ in by_hand.named_parameters()] == [n for n, _ in ours.named_parameters()]
    idx = torch.randint(23, (3, 16), generator=torch.Generator().manual_seed(1))
    targets = torch.randint(23, (3, 16), generator=torch.Generator().manual_seed(2))
    a, b = ours(idx, targets), by_hand(idx, targets)
    torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-5)
    a.loss.backward()
    b.loss.backward()
    grads = dict(by_hand.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-4, atol=1e-6)


def test_by_hand_kernels_keep_every_intermediate_for_the_backward_pass(bench):
    """Why the book's GPT uses the fused kernels: op by op, the forward pass saves every
    intermediate for the backward pass (and a step takes longer)."""
    saved = []
    for model in (tiny_gpt(), bench.by_hand_kernels(tiny_gpt())):
        numbers = []

        def pack(t, numbers=numbers):
            numbers.append(t.numel())
            return t

        idx = torch.randint(23, (3, 16), generator=torch.Generator().manual_seed(1))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(idx, idx).loss.backward()
        saved.append(sum(numbers))
    assert saved[1] > 1.5 * saved[0]


def test_by_hand_kernels_leave_the_global_random_stream_alone(bench):
    model = tiny_gpt()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    bench.by_hand_kernels(model)
    assert torch.equal(torch.rand(3), expected)  # training draws the same numbers as before
