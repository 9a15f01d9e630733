"""lmlib.gguf against the gguf package (llama.cpp's own Python reader and writer) and
transformers' GGUF loader: the same metadata, the same weights bit for bit, the same model.

Small files are written here with gguf's GGUFWriter; the SmolLM2 tests are marked slow.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.gguf import (
    LLAMA_NAMES,
    GGUFError,
    dequantize,
    llama_config,
    llama_state_dict,
    load_tensors,
    read_gguf,
)

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType
TYPES = {"Q4_0": Q.Q4_0, "Q4_1": Q.Q4_1, "Q8_0": Q.Q8_0, "F16": Q.F16, "BF16": Q.BF16}


def reference(values: np.ndarray, type: str):
    """(the bytes gguf stores ``values`` as, what gguf de-quantizes them to)"""
    raw = gguf.quants.quantize(values, TYPES[type])
    return raw, gguf.quants.dequantize(raw, TYPES[type]).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(
    type=st.sampled_from(sorted(TYPES)),
    blocks=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 0.05, 1.0, 300.0]),
)
def test_dequantize_equals_gguf_bit_for_bit(type, blocks, seed, scale):
    values = np.random.default_rng(seed).normal(0, scale, (blocks * 32,)).astype(np.float32)
    raw, want = reference(values, type)
    got = dequantize(torch.from_numpy(raw.reshape(-1).view(np.uint8).copy()), type, values.size)
    assert torch.equal(got, torch.from_numpy(want.reshape(-1)))


def test_q4_1_is_quantize_minmax_at_4_bits_in_groups_of_32():
    """Chapter 7's asymmetric quantization is the format SmolLM2 ships in: the same 4-bit
    integers, and the same weights up to the float16 rounding of the scale and minimum."""
    from lmlib.quantization import quantize_minmax

    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    raw, _ = reference(w.numpy(), "Q4_1")
    blocks = torch.from_numpy(raw.reshape(-1, 20).copy())  # (8 blocks, 20 bytes)
    theirs = torch.cat([blocks[:, 4:] & 0x0F, blocks[:, 4:] >> 4], dim=1).reshape(4, 64)
    q, scale, low = quantize_minmax(w, bits=4, group_size=32)
    assert torch.equal(q, theirs)
    got = dequantize(blocks.reshape(-1), "Q4_1", w.numel()).reshape(4, 64)
    ours = low.repeat_interleave(32, 1) + scale.repeat_interleave(32, 1) * q.float()
    assert (got - ours).abs().max() <= 1e-3 * w.abs().max()
    assert (got - w).abs().max() <= scale.max() / 2 + 1e-3 * w.abs().max()


def write(path, tensors, metadata=(), arch="llama"):
    """A GGUF file holding ``tensors`` (name -> (float32 array, type)) and ``metadata``."""
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in metadata:
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, value)
    for name, (values, type) in tensors.items():
        if type == "F32":
            writer.add_tensor(name, values)
        else:
            writer.add_tensor(
                name, gguf.quants.quantize(values, TYPES[type]), raw_dtype=TYPES[type]
            )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "a.weight": (rng.normal(size=(3, 64)).astype(np.float32), "Q4_1"),
        "b.weight": (rng.normal(size=(2, 32)).astype(np.float32), "Q8_0"),
        "norm.weight": (rng.normal(size=(5,)).astype(np.float32), "F32"),
        "c.weight": (rng.normal(size=(2, 3, 32)).astype(np.float32), "F16"),
    }
    metadata = [("n", 7), ("eps", 0.5), ("flag", True), ("name", "tiny ✓"),
                ("ids", [1, 2, 3]), ("words", ["a", "b c", "é"])]  # fmt: skip
    return write(tmp_path / "small.gguf", tensors, metadata), tensors, metadata


def test_read_gguf_agrees_with_the_gguf_reader(small):
    path, tensors, metadata = small
    file = read_gguf(path)
    assert file.version == 3
    for key, value in metadata:
        assert file.metadata[key] == pytest.approx(value) if key == "eps" else value
    assert file.metadata["general.architecture"] == "llama"
    assert list(file.tensors) == list(tensors)
    theirs = {t.name: t for t in gguf.GGUFReader(path).tensors}
    for name, info in file.tensors.items():
        assert info.shape == tensors[name][0].shape
        assert info.type == theirs[name].tensor_type.name
        assert (info.offset, info.nbytes) == (theirs[name].data_offset, theirs[name].n_bytes)
    loaded = load_tensors(file)
    for name, (values, type) in tensors.items():
        want = values if type == "F32" else reference(values, type)[1].reshape(values.shape)
        assert loaded[name].shape == values.shape
        assert torch.equal(loaded[name], torch.from_numpy(want))


def test_a_file_that_is_not_gguf_says_so(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00{}")
    with pytest.raises(GGUFError, match="is not a GGUF file: it starts with"):
        read_gguf(path)


def test_an_unknown_version_is_refused(small):
    path = small[0]
    data = bytearray(path.read_bytes())
    data[4:8] = (1).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(GGUFError, match="version 1; this reader knows"):
        read_gguf(path)


@pytest.fixture(scope="module")
def full_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    rng = np.random.default_rng(1)
    tensors = {"w.weight": (rng.normal(size=(4, 64)).astype(np.float32), "Q4_1")}
    return write(folder / "full.gguf", tensors, [("words", ["x"] * 20)]).read_bytes()


@settings(max_examples=60, deadline=None)
@given(fraction=st.floats(0.0, 0.999))
def test_a_cut_short_file_raises_a_clear_error(tmp_path_factory, full_file, fraction):
    """Wherever a download stops, the reader says the file is cut short (never an IndexError
    from deep inside, never a model built from half its weights)."""
    cut = tmp_path_factory.getbasetemp() / "cut.gguf"
    cut.write_bytes(full_file[: max(4, int(len(full_file) * fraction))])
    with pytest.raises(GGUFError, match="cut short|ends early"):
        load_tensors(read_gguf(cut))


def test_a_damaged_length_is_refused_before_anything_is_read(small):
    """A string length of 2**62 bytes (one flipped bit) must not ask for memory."""
    path = small[0]
    data = bytearray(path.read_bytes())
    at = data.index(b"general.architecture") - 8  # that key's length, 8 bytes
    data[at + 7] |= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(GGUFError, match="ends early .* bytes wanted from byte"):
        read_gguf(path)


def test_an_unknown_tensor_type_is_named_when_loading(small):
    path = small[0]
    data = bytearray(path.read_bytes())
    file = read_gguf(path)
    # the type field of the first tensor record: after its name, dimension count, dimensions
    name = b"a.weight"
    at = data.index(name) + len(name) + 4 + 2 * 8
    data[at : at + 4] = (12).to_bytes(4, "little")  # Q4_K, which this reader does not decode
    path.write_bytes(bytes(data))
    file = read_gguf(path)
    assert file.tensors["a.weight"].type == "ggml type 12"
    with pytest.raises(GGUFError, match=r"tensor a.weight: its type \(ggml type 12\) is not one"):
        load_tensors(file, ["a.weight"])
    assert load_tensors(file, ["b.weight"])["b.weight"].shape == (2, 32)


def tiny_llama(tie: bool):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=tie,
        bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def llama_cpp_file(path, model, type):
    """``model`` as llama.cpp's converter writes it: its names, its row order for the query
    and key weights (the two halves of each head interleaved), and its metadata."""
    c = model.config
    names = {hf: ours for ours, hf in LLAMA_NAMES.items()}
    tensors = {}
    for key, w in model.state_dict().items():
        if key == "lm_head.weight" and c.tie_word_embeddings:
            continue
        parts = key.removesuffix(".weight").split(".")
        if parts[:2] == ["model", "layers"]:
            name = f"blk.{parts[2]}.{names['.'.join(parts[3:])]}"
        else:
            name = names[".".join(parts)]
        w = w.numpy()
        if name.endswith(("attn_q", "attn_k")):
            heads = c.num_attention_heads if name.endswith("q") else c.num_key_value_heads
            w = w.reshape(heads, 2, w.shape[0] // heads // 2, -1).swapaxes(1, 2).reshape(w.shape)
        tensors[f"{name}.weight"] = (np.ascontiguousarray(w), "F32" if w.ndim == 1 else type)
    metadata = [
        ("llama.context_length", c.max_position_embeddings),
        ("llama.embedding_length", c.hidden_size),
        ("llama.feed_forward_length", c.intermediate_size),
        ("llama.block_count", c.num_hidden_layers),
        ("llama.attention.head_count", c.num_attention_heads),
        ("llama.attention.head_count_kv", c.num_key_value_heads),
        ("llama.rope.dimension_count", c.head_dim), ("llama.rope.freq_base", 10000.0),
        ("llama.attention.layer_norm_rms_epsilon", 1e-5), ("llama.vocab_size", c.vocab_size),
        ("tokenizer.ggml.bos_token_id", 1), ("tokenizer.ggml.eos_token_id", 2),
    ]  # fmt: skip
    return write(path, tensors, metadata)


@pytest.mark.parametrize("tie", [True, False])
def test_a_llama_cpp_llama_loads_as_the_model_it_was_converted_from(tmp_path, tie):
    transformers = pytest.importorskip("transformers")
    model = tiny_llama(tie)
    file = read_gguf(llama_cpp_file(tmp_path / "tiny.gguf", model, "F32"))
    config = transformers.LlamaConfig(**llama_config(file))
    for key in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "max_position_embeddings",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
    ):
        # GGUF keeps floats as float32: rms_norm_eps 1e-5 comes back as 9.9999997e-06
        assert getattr(config, key) == pytest.approx(getattr(model.config, key)), key
    state = llama_state_dict(file)
    want = model.state_dict()
    if tie:
        want = {k: v for k, v in want.items() if k != "lm_head.weight"}
    assert state.keys() == want.keys()
    assert all(torch.equal(state[k], want[k]) for k in want)  # the rows back in order
    loaded = transformers.LlamaForCausalLM.from_pretrained(None, config=config, state_dict=state)
    ids = torch.tensor([[1, 5, 9, 33, 70, 2]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_llama_state_dict_refuses_another_architecture_and_unknown_tensors(tmp_path):
    other = write(
        tmp_path / "gpt2.gguf", {"x.weight": (np.ones(4, np.float32), "F32")}, arch="gpt2"
    )
    with pytest.raises(GGUFError, match="holds a 'gpt2' model, not a Llama"):
        llama_state_dict(read_gguf(other))
    odd = write(tmp_path / "odd.gguf", {"blk.0.attn_qkv.weight": (np.ones(4, np.float32), "F32")},
                [("llama.attention.head_count", 2)])  # fmt: skip
    with pytest.raises(GGUFError, match="no Hugging Face name for the tensor blk.0.attn_qkv"):
        llama_state_dict(read_gguf(odd))


@pytest.mark.slow
def test_smollm2_file_is_read_as_the_gguf_reader_reads_it():
    from lmlib.pretrained import smollm2_gguf_path

    path = smollm2_gguf_path()
    file = read_gguf(path)
    theirs = gguf.GGUFReader(path)
    assert set(file.metadata) == set(theirs.fields) - {"GGUF.version", "GGUF.tensor_count",
                                                       "GGUF.kv_count"}  # fmt: skip
    assert (
        file.metadata["tokenizer.ggml.tokens"] == theirs.fields["tokenizer.ggml.tokens"].contents()
    )
    assert [(t.name, t.data_offset, t.n_bytes) for t in theirs.tensors] == [
        (i.name, i.offset, i.nbytes) for i in file.tensors.values()
    ]
    assert {i.type for i in file.tensors.values()} <= {"F32", "Q4_1", "Q8_0"}
