"""Tiny models shared by the unit tests, in the manner of Hugging Face's model testers.

vocab 99, d_model 32, 2 layers, 4 heads (2 key/value heads for the Llama), block size 32: big
enough to have every part (several heads, GQA, a stack), small enough to run in milliseconds.

- ``tiny_gpt_config`` and ``tiny_llama_config``: the configs (``dataclasses.replace`` one to
  change a field).
- ``tiny_gpt``, ``tiny_llama`` and ``tiny_model`` (each test runs once per model): fresh
  models in eval mode with seeded random weights, larger than the init's N(0, 0.02) and with
  random norm weights. At the init's scale every attention row is nearly uniform and the
  logits nearly equal, so a wrong mask or position would hide under the tolerance; here it
  shows. A test that needs the init itself builds its model from the config.
"""

import pytest
import torch

from lmlib.model import GPT, GPTConfig, Llama, LlamaConfig

VOCAB, D_MODEL, N_LAYERS, N_HEADS, N_KV_HEADS, BLOCK = 99, 32, 2, 4, 2, 32


@pytest.fixture
def tiny_gpt_config() -> GPTConfig:
    return GPTConfig(block_size=BLOCK, vocab_size=VOCAB, n_layers=N_LAYERS, n_heads=N_HEADS,
                     d_model=D_MODEL)  # fmt: skip


@pytest.fixture
def tiny_llama_config() -> LlamaConfig:
    return LlamaConfig(vocab_size=VOCAB, block_size=BLOCK, n_layers=N_LAYERS, n_heads=N_HEADS,
                       n_kv_heads=N_KV_HEADS, d_model=D_MODEL, hidden=64)  # fmt: skip


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` in eval mode with seeded weights: matrices N(0, 0.2), norms U(0.5, 1.5).

    Seeded from its own generator, so a test's other random numbers do not depend on the
    order in which fixtures ran.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # a tied matrix comes once
            if ("ln" in name or "norm" in name) and name.endswith("weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture
def tiny_gpt(tiny_gpt_config) -> GPT:
    return randomized(GPT(tiny_gpt_config))


@pytest.fixture
def tiny_llama(tiny_llama_config) -> Llama:
    return randomized(Llama(tiny_llama_config))


@pytest.fixture(params=["gpt", "llama"])
def tiny_model(request) -> torch.nn.Module:
    """Each test that takes ``tiny_model`` runs twice: with `tiny_gpt`, then `tiny_llama`."""
    return request.getfixturevalue(f"tiny_{request.param}")
