"""Where the memory of a training step goes: predicted, measured, and saved (Chapter 5).

Training with AdamW keeps four things in memory (Rajbhandari et al. 2020, "ZeRO", Sec. 3):
the weights, their gradients, the optimizer's state (Adam's two moments, and in mixed
precision a float32 master copy of the weights), and the activations the forward pass saves
for the backward pass. The first three grow with the parameter count P; the activations
grow with the batch B, the sequence T, the layers L and the width C, and not with P.

Bytes per parameter (weights + gradients + optimizer), as in ZeRO's Sec. 3.1:

- ``"fp32"``: 4 + 4 + 8 = 16 (Adam's m and v in float32);
- ``"bf16"``: 2 + 2 + 12 = 16 (bf16 weights and gradients; float32 master weights, m, v).

Mixed precision saves no parameter memory with Adam: it halves the activations and speeds
up matmuls on hardware with bf16 units. Sharding (ZeRO, FSDP) divides the parameter memory
by the number of processes N; activation checkpointing keeps only each block's input and
recomputes the rest during the backward pass.

- `TransformerShape` and `SHAPES`: the sizes the model needs (GPT-2, SmolLM2, Llama 2).
- `activation_elements`: numbers saved for the backward pass, per token.
- `training_memory`: the four parts in bytes, for a precision, a sharding and checkpointing.
- `AllocationTracker` and `measure_step`: the same parts measured on a real training step.
- `checkpoint_blocks`: activation checkpointing for `lmlib.model`'s models.

Shape legend: B batch, T time (``block_size``), C channels (``d_model``), H MLP hidden size
(``hidden``), L layers, nh heads, nkv key/value heads, V vocabulary, P parameters, N
processes.

>>> gpt2 = SHAPES["GPT-2 (124M)"]
>>> gpt2.n_params  # 12 layers of 12 C^2 + 13 C, embeddings (V + T) C, the last LayerNorm
124439808
>>> mem = training_memory(gpt2, batch_size=8, block_size=1024)
>>> round((mem.weights + mem.gradients + mem.optimizer) / 2**30, 2)  # 16 bytes x 124.4M
1.85
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.checkpoint import checkpoint

from lmlib.model import Block, GPTConfig, LlamaConfig
from lmlib.runtime import check_int

# (weights, gradients, optimizer) bytes per parameter with AdamW; see the module docstring.
BYTES_PER_PARAM = {"fp32": (4, 4, 8), "bf16": (2, 2, 12)}
ACTIVATION_BYTES = {"fp32": 4, "bf16": 2}
SHARDINGS = ("ddp", "zero1", "zero2", "zero3")  # what each process keeps whole: see below


@dataclass(frozen=True)
class TransformerShape:
    """What the memory model needs to know about a decoder-only transformer."""

    family: str  # "gpt" (LayerNorm, GELU MLP, learned positions) or "llama" (SwiGLU, RoPE)
    n_layers: int
    d_model: int
    n_heads: int
    vocab_size: int
    block_size: int  # GPT's position table has this many rows; Llama has no table
    hidden: int  # MLP hidden size: 4 C for GPT-2, about 8/3 C for Llama's SwiGLU
    n_kv_heads: int | None = None  # None: one per query head
    tie_embeddings: bool = True  # the output layer shares the token embedding
    bias: bool = True  # GPT-2's biases in Linears and LayerNorms (Llama has none)

    def __post_init__(self):
        if self.family not in ("gpt", "llama"):
            raise ValueError(f"family must be 'gpt' or 'llama', got {self.family!r}")
        for name in ("n_layers", "d_model", "n_heads", "vocab_size", "block_size", "hidden"):
            check_int(getattr(self, name), name, low=1)

    @property
    def kv_dim(self) -> int:
        """Width of k (and of v): C * nkv / nh."""
        return self.d_model // self.n_heads * (self.n_kv_heads or self.n_heads)

    @property
    def layer_params(self) -> int:
        """Parameters of one block: attention, MLP and the two norms."""
        C, H, b = self.d_model, self.hidden, int(self.bias)
        if self.family == "gpt":  # c_attn, attn.c_proj, c_fc, mlp.c_proj, 2 LayerNorms
            return 4 * C * C + 2 * C * H + b * (3 * C + C + H + C) + 2 * (1 + b) * C
        return 2 * C * C + 2 * C * self.kv_dim + 3 * C * H + 2 * C  # q, o, k, v, SwiGLU, 2 RMS

    @property
    def n_params(self) -> int:
        """All parameters: L blocks, the embeddings, the final norm, an untied output layer."""
        C = self.d_model
        embeddings = self.vocab_size * C * (1 if self.tie_embeddings else 2)
        if self.family == "gpt":
            embeddings += self.block_size * C  # the position table
            final_norm = (1 + int(self.bias)) * C
        else:
            final_norm = C
        return self.n_layers * self.layer_params + embeddings + final_norm


def shape_of(config: GPTConfig | LlamaConfig) -> TransformerShape:
    """The `TransformerShape` of an `lmlib.model` config."""
    if isinstance(config, GPTConfig):
        return TransformerShape("gpt", config.n_layers, config.d_model, config.n_heads,
                                config.vocab_size, config.block_size, 4 * config.d_model,
                                bias=config.bias)  # fmt: skip
    if isinstance(config, LlamaConfig):
        return TransformerShape("llama", config.n_layers, config.d_model, config.n_heads,
                                config.vocab_size, config.block_size, config.hidden,
                                config.n_kv_heads, config.tie_embeddings, bias=False)  # fmt: skip
    raise TypeError(f"config must be a GPTConfig or LlamaConfig, got {type(config).__name__}")


# Published configurations: GPT-2 small (Radford et al. 2019, Hugging Face's gpt2
# config.json), SmolLM2-135M (HuggingFaceTB's config.json, = LlamaConfig's defaults), and
# Llama 2 7B and 70B (Touvron et al. 2023, Table 1 and the released config.json files).
SHAPES = {
    "SmolLM2-135M": shape_of(LlamaConfig()),
    "GPT-2 (124M)": shape_of(GPTConfig()),
    "Llama-2-7B": TransformerShape("llama", 32, 4096, 32, 32000, 4096, 11008, 32, False, False),
    "Llama-2-70B": TransformerShape("llama", 80, 8192, 64, 32000, 4096, 28672, 8, False, False),
}


def activation_elements(shape: TransformerShape, batch_size: int, block_size: int,
                        impl: str = "fused",
                        checkpointing: bool = False) -> tuple[int, int]:  # fmt: skip
    """Numbers the forward pass keeps for the backward pass: (per layer, top), for a batch.

    "top" is what the embeddings and the output layer keep, once. ``impl="fused"`` counts
    what fused kernels keep (one saved input per LayerNorm, GELU and Linear, flash attention
    keeping q, k, v, its output and one log-sum-exp per head, no dropout): for GPT-2,
    ``16 C + nh + 4`` per token and layer (the C terms are Korthikanti et al. 2022's
    34 s b h bytes in 16 bits, without their two dropout masks) and ``2 C + 2 + V`` on top.
    ``impl="lmlib"`` counts what the book's GPT keeps. Its LayerNorm, GELU and attention are
    PyTorch's fused kernels, so a token keeps the same numbers; but its attention is given
    the causal mask, which each layer keeps too (as a float T x T tensor): ``16 C + nh + 4``
    per token and layer plus T x T, and ``2 C + 2 + V`` on top. `measure_step` checks this
    count (tests/unit/test_memory.py).

    With ``checkpointing`` a layer keeps only its input (C per token) and the backward pass
    recomputes one layer at a time: the layer term is then C, and "top" gains one layer.

    >>> tiny = shape_of(GPTConfig(block_size=8, vocab_size=10, n_layers=2, n_heads=2, d_model=4))
    >>> activation_elements(tiny, 1, 1)  # 16 * 4 + 2 + 4 and 2 * 4 + 2 + 10, for one token
    (70, 20)
    >>> activation_elements(tiny, 3, 8)  # 24 tokens
    (1680, 480)
    >>> activation_elements(tiny, 3, 8, checkpointing=True)  # (24 * 4, 480 + 1680)
    (96, 2160)
    """
    check_int(batch_size, "batch_size", low=1)
    check_int(block_size, "block_size", low=1)
    C, H, nh, V = shape.d_model, shape.hidden, shape.n_heads, shape.vocab_size
    tokens = batch_size * block_size
    if impl == "lmlib":
        if shape.family != "gpt":
            raise ValueError("impl='lmlib' is counted for the book's GPT only; use 'fused'")
        layer, top = _gpt_fused(tokens, C, H, nh, V)
        layer += block_size * block_size  # the causal mask its attention is given
    elif impl == "fused" and shape.family == "gpt":
        layer, top = _gpt_fused(tokens, C, H, nh, V)
    elif impl == "fused":
        # norm inputs 2 C, q/k/v input C, q C, k and v 2 kv_dim, output C, MLP input C, 4 H
        layer = tokens * (6 * C + 2 * shape.kv_dim + 4 * H + nh + 2)
        top = tokens * (2 * C + 1 + V)
    else:
        raise ValueError(f"impl must be 'fused' or 'lmlib', got {impl!r}")
    return (tokens * C, top + layer) if checkpointing else (layer, top)


def _gpt_fused(tokens: int, C: int, H: int, nh: int, V: int) -> tuple[int, int]:
    """A GPT-2 batch through fused kernels: (per layer, top)."""
    # per layer: the norms' inputs 2 C and their mean and 1/std 4, the qkv input C, q, k, v
    # 3 C, attention's output C and one log-sum-exp per head, the MLP input C, GELU's input
    # and output 2 H; on top: the last norm's input C, mean and 1/std 2, the output layer's
    # input C and the logits V
    return tokens * (8 * C + 2 * H + nh + 4), tokens * (2 * C + 2 + V)


@dataclass
class TrainingMemory:
    """Bytes per process of one training step, by what they hold."""

    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        """All four at once. A real step's peak differs a little: the backward pass frees
        activations while it creates gradients, and adds temporaries of its own."""
        return self.weights + self.gradients + self.optimizer + self.activations


def parameter_memory(
    n_params: int, precision: str = "fp32", sharding: str = "ddp", world_size: int = 1
) -> tuple[int, int, int]:
    """Bytes per process of (weights, gradients, optimizer state) for AdamW.

    ``sharding`` says what each of the N = ``world_size`` processes keeps whole (ZeRO's
    stages; FSDP's ``fully_shard`` is stage 3): "ddp" everything; "zero1" a 1/N share of the
    optimizer state; "zero2" also of the gradients; "zero3" also of the weights.

    ZeRO's Figure 1, 7.5 billion parameters in mixed precision on N = 64 GPUs, in GB:

    >>> [round(sum(parameter_memory(7_500_000_000, "bf16", s, 64)) / 1e9, 1) for s in SHARDINGS]
    [120.0, 31.4, 16.6, 1.9]
    """
    check_int(n_params, "n_params", low=0)
    check_int(world_size, "world_size", low=1)
    if precision not in BYTES_PER_PARAM:
        raise ValueError(f"precision must be one of {list(BYTES_PER_PARAM)}, got {precision!r}")
    if sharding not in SHARDINGS:
        raise ValueError(f"sharding must be one of {list(SHARDINGS)}, got {sharding!r}")
    stage, N = SHARDINGS.index(sharding), world_size  # stage 0: DDP
    w, g, o = (n_params * b for b in BYTES_PER_PARAM[precision])
    return (w // N if stage >= 3 else w, g // N if stage >= 2 else g, o // N if stage else o)


def training_memory(shape: TransformerShape, batch_size: int, block_size: int,
                    precision: str = "fp32", sharding: str = "ddp", world_size: int = 1,
                    checkpointing: bool = False,
                    impl: str = "fused") -> TrainingMemory:  # fmt: skip
    """Bytes per process for AdamW training on ``batch_size`` sequences per process.

    `parameter_memory` for the weights, gradients and optimizer state, plus, with "zero3",
    one whole layer's weights and gradients while that layer runs (FSDP gathers a layer,
    uses it and frees it again); `activation_elements` for the activations, at 4 bytes
    each in "fp32" and 2 in "bf16".

    >>> shape = TransformerShape("gpt", 4, 8, 2, 10, 8, 32)  # L 4, C 8, nh 2, V 10, T 8, H 32
    >>> m = training_memory(shape, 1, 8)
    >>> shape.n_params, (m.weights, m.gradients, m.optimizer)  # 4, 4 and 8 bytes each
    (3648, (14592, 14592, 29184))
    >>> m.activations == 4 * 8 * (4 * 134 + 28)  # 4 bytes x T x (L x layer + top)
    True
    """
    w, g, o = parameter_memory(shape.n_params, precision, sharding, world_size)
    if sharding == "zero3":
        per_w, per_g, _ = BYTES_PER_PARAM[precision]
        w, g = w + shape.layer_params * per_w, g + shape.layer_params * per_g
    layer, top = activation_elements(shape, batch_size, block_size, impl, checkpointing)
    activations = (shape.n_layers * layer + top) * ACTIVATION_BYTES[precision]
    return TrainingMemory(w, g, o, activations)


# --------------------------------------------------------------------------------------------
# Measuring


class AllocationTracker(TorchDispatchMode):
    """Counts the bytes of every tensor created inside ``with tracker:``, and when each is
    freed: ``live`` now, ``peak`` the most at once. Works on any device.

    An op's output that shares storage with one of its inputs (a view, an in-place update)
    allocates nothing; a new storage is counted once, until Python frees its last reference.

    >>> with AllocationTracker() as tracker:
    ...     a = torch.ones(1000)  # 4,000 bytes
    ...     b = a.view(10, 100)  # a view: no new memory
    ...     del a, b
    ...     c = torch.ones(10)
    >>> tracker.peak, tracker.live
    (4000, 40)
    """

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, weakref.ref] = {}

    def _freed(self, key: int, nbytes: int) -> None:
        self._refs.pop(key, None)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}  # fmt: skip
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in inputs or key in self._refs or storage.nbytes() == 0:
                continue
            nbytes = storage.nbytes()
            self._refs[key] = weakref.ref(storage, lambda _, k=key, n=nbytes: self._freed(k, n))
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        return out


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages among ``tensors`` (a tied weight counts once)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def measure_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[], torch.Tensor]) -> dict[str, int]:  # fmt: skip
    """One training step (``loss_fn()``, backward, ``optimizer.step()``), measured in bytes.

    Returns the four parts of `TrainingMemory`, measured: ``weights`` (the parameters),
    ``gradients`` (after the backward pass), ``optimizer`` (its state after the step),
    ``activations`` (what is still alive when the forward pass has returned the loss: what it
    saved for backward), and ``peak``: the weights, the optimizer state from before the step,
    and the most the step had allocated at once. Run one step before measuring, so that
    Adam's state exists, as in every step after the first.

    >>> model = nn.Linear(100, 100)  # 10,100 parameters: 40,400 bytes
    >>> opt = torch.optim.AdamW(model.parameters())
    >>> x = torch.randn(8, 100)
    >>> m = measure_step(model, opt, lambda: model(x).square().mean())
    >>> m["weights"], m["gradients"], m["optimizer"] - 8  # m and v, and two step counters
    (40400, 40400, 80800)
    >>> m["activations"]  # Linear's output (8 x 100 floats), saved by square; the loss
    3204
    """

    def state_bytes():
        return tensor_bytes(t for s in optimizer.state.values() for t in s.values()
                            if torch.is_tensor(t))  # fmt: skip

    optimizer.zero_grad(set_to_none=True)
    before = state_bytes()
    weights = tensor_bytes(model.parameters())
    with AllocationTracker() as tracker:
        loss = loss_fn()
        activations = tracker.live
        loss.backward()
        gradients = tensor_bytes(p.grad for p in model.parameters() if p.grad is not None)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        del loss
    return {"weights": weights, "gradients": gradients, "optimizer": state_bytes(),
            "activations": activations, "peak": weights + before + tracker.peak}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Activation checkpointing


class CheckpointedBlock(Block):
    """A `lmlib.model.Block` that keeps only its input for the backward pass and runs its
    forward again there. Same parameters, same names, same numbers (dropout's random masks
    are replayed); `checkpoint_blocks` turns a model's blocks into these."""

    def forward(self, x: torch.Tensor, return_weights: bool = False, **attn_kwargs):
        if not torch.is_grad_enabled() or return_weights:  # nothing to save: no backward
            return super().forward(x, return_weights, **attn_kwargs)
        # use_reentrant=False: PyTorch's recommended version, which works with DDP and FSDP
        return checkpoint(super().forward, x, use_reentrant=False, **attn_kwargs)


def checkpoint_blocks(model: nn.Module) -> int:
    """Turn on activation checkpointing for every `lmlib.model.Block` of ``model`` in place;
    returns how many. The state dict is unchanged, so checkpoints load either way.

    >>> from lmlib.model import GPT
    >>> model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layers=3, n_heads=1, d_model=4))
    >>> checkpoint_blocks(model), type(model.transformer.h[0]).__name__
    (3, 'CheckpointedBlock')
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} has no lmlib.model.Block to checkpoint: "
            f"activation checkpointing is for lmlib's GPT and Llama"
        )
    for block in blocks:
        if type(block) not in (Block, CheckpointedBlock):  # e.g. FSDP's own subclass
            raise ValueError(
                f"{type(block).__name__} is not a plain Block: call "
                f"checkpoint_blocks before fully_shard or other wrappers"
            )
        block.__class__ = CheckpointedBlock
    return len(blocks)
