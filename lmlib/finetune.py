"""Parameter-efficient fine-tuning (Chapter 5): train a few new weights, freeze the rest.

Each method adds one idea to a frozen pretrained model, and each starts as "no change":

- `LoRALinear` (Hu et al. 2021): beside a frozen ``W`` learn a low-rank update, so the layer
  computes ``W x + (alpha / r) B A x`` with A (r, in) and B (out, r); B starts at zero.
  `merge_lora` folds ``W + (alpha / r) B A`` back into one plain ``nn.Linear``.
- `Adapter` (Houlsby et al. 2019): a small bottleneck MLP with a residual connection after a
  block's attention and MLP outputs; its up-projection starts at zero.
- `PromptTuning` (Lester et al. 2021): learned "virtual token" embeddings put in front of
  the input; the model itself does not change at all.

`replace_modules` does the model surgery, here and in `lmlib.quantization`.
`lmlib.classifier_training` compares the methods on one task, each on the same batches.

Shape legend: B batch, T time, P virtual tokens, C channels (d_model), V vocabulary, r rank.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.inputs import check_token_ids
from lmlib.model import Block, LMOutput, lm_loss
from lmlib.runtime import check_int, check_number


def freeze(model: nn.Module) -> nn.Module:
    """Stop gradients to every parameter of ``model`` (in place); returns the model."""
    return model.requires_grad_(False)


def trainable_parameters(model: nn.Module) -> int:
    """How many parameters an optimizer would update.

    >>> layer = nn.Linear(4, 3)  # 4 * 3 weights + 3 biases
    >>> trainable_parameters(layer), trainable_parameters(freeze(layer))
    (15, 0)
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_summary(model: nn.Module) -> str:
    """One line: trainable vs total parameters (a tied weight counts once).

    >>> parameter_summary(LoRALinear(nn.Linear(4, 3), r=2, alpha=4))  # A 2*4 + B 3*2
    'trainable 14 of 29 parameters (48.28%)'
    """
    total = sum(p.numel() for p in model.parameters())
    n = trainable_parameters(model)
    return f"trainable {n:,} of {total:,} parameters ({100 * n / total:.2f}%)"


def name_ends_with(name: str, suffixes) -> bool:
    """Whether the dotted module ``name`` ends with one of ``suffixes``, whole names only.

    >>> [name_ends_with(name, ("q_proj",)) for name in ("blocks.0.attn.q_proj", "xq_proj")]
    [True, False]
    >>> [name_ends_with(name, ("attn.c_proj",)) for name in ("h.0.attn.c_proj", "h.0.mlp.c_proj")]
    [True, False]
    """
    return f".{name}".endswith(tuple(f".{s}" for s in suffixes))


def replace_modules(model: nn.Module, match, make) -> int:
    """Replace every submodule ``m`` named ``name`` with ``match(name, m)`` true by ``make(m)``,
    in place; returns how many. LoRA, merging and quantization all change a model this way.

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    >>> replace_modules(net, lambda name, m: isinstance(m, nn.Linear), lambda m: nn.Identity())
    2
    >>> net
    Sequential(
      (0): Identity()
      (1): ReLU()
      (2): Identity()
    )
    """
    todo = [(parent, child_name, child)
            for name, parent in model.named_modules()
            for child_name, child in parent.named_children()
            if match(f"{name}.{child_name}".lstrip("."), child)]  # fmt: skip
    for parent, child_name, child in todo:  # collect first: never edit what we iterate over
        setattr(parent, child_name, make(child))
    return len(todo)


# --------------------------------------------------------------------------------------------
# LoRA


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * B(A(x))`` with ``base`` frozen and only A and B trained.

    A is Kaiming-uniform like any ``nn.Linear`` and B is zero, so training starts from
    exactly the base layer. ``alpha / r`` keeps the update's size steady when r changes.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be an nn.Linear, got {type(base).__name__}")
        check_int(r, "r", low=1)
        check_number(alpha, "alpha")
        check_number(dropout, "dropout", 0, 1)
        self.base = freeze(base)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        kw = dict(bias=False, device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Linear(base.in_features, r, **kw)  # (r, in)
        self.lora_B = nn.Linear(r, base.out_features, **kw)  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # as nn.Linear and peft
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = self.lora_B(self.lora_A(self.dropout(x)))  # (B, T, in) -> (B, T, r) -> out
        return self.base(x) + self.scaling * update

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with weight ``W + (alpha / r) B A``: no extra inference cost."""
        linear = copy.deepcopy(self.base)  # same shapes, bias, device and dtype; frozen
        with torch.no_grad():
            delta = self.lora_B.weight @ self.lora_A.weight  # (out, r) @ (r, in) -> (out, in)
            linear.weight += self.scaling * delta
        return linear


def chosen_blocks(model: nn.Module, blocks=None) -> list[Block]:
    """The model's `Block` modules in order, or those whose indices ``blocks`` lists.

    Indices count as Python's do: -1 is the last block, and ``range(-10, 0)`` the last 10
    (SmolLM2's blocks 20-29 of 30). A method that trains new weights in the last blocks only saves
    time as well as parameters: the backward pass stops at the lowest block that trains.

    >>> from lmlib.model import GPT, GPTConfig
    >>> gpt = GPT(GPTConfig(vocab_size=8, block_size=4, n_layers=3, n_heads=1, d_model=4))
    >>> every = chosen_blocks(gpt)
    >>> [every.index(b) for b in chosen_blocks(gpt, [-1, 0])]
    [2, 0]
    """
    found = [m for m in model.modules() if isinstance(m, Block)]
    if blocks is None:
        return found
    if isinstance(blocks, (str, bytes)) or not hasattr(blocks, "__iter__"):
        raise TypeError(f"blocks must be block indices such as range(-10, 0), got {blocks!r}")
    n, blocks = len(found), list(blocks)  # a generator is read once
    indices = [check_int(i, "each of blocks", low=-n, high=n - 1) % n for i in blocks]
    if not indices or len(set(indices)) != len(indices):
        raise ValueError(f"blocks must name at least one block, each once, got {blocks}")
    return [found[i] for i in indices]


def add_lora(model, targets=("q_proj", "v_proj"), r: int = 8, alpha: float = 16,
             dropout: float = 0.0, blocks=None):  # fmt: skip
    """Freeze ``model`` and wrap each ``nn.Linear`` named by ``targets`` in `LoRALinear`.

    A target matches a module whose dotted name ends with it: ``"q_proj"`` (Llama),
    ``"c_attn"`` (GPT-2) or ``"attn.c_proj"`` (GPT-2's attention output, not its MLP's).
    With ``blocks`` (indices, as `chosen_blocks` reads them) only the layers inside those
    blocks are wrapped. Works in place and returns the model.
    """
    targets = (targets,) if isinstance(targets, str) else tuple(targets)  # a name, not letters
    check_int(r, "r", low=1)  # checked before anything is frozen
    check_number(alpha, "alpha")
    check_number(dropout, "dropout", 0, 1)
    inside = None if blocks is None else {
        id(m) for block in chosen_blocks(model, blocks) for m in block.modules()}  # fmt: skip
    freeze(model)

    def match(name, module):
        return (isinstance(module, nn.Linear) and name_ends_with(name, targets)
                and (inside is None or id(module) in inside))  # fmt: skip

    if replace_modules(model, match, lambda lin: LoRALinear(lin, r, alpha, dropout)) == 0:
        where = "" if blocks is None else f" in blocks {blocks!r}"
        raise ValueError(f"no nn.Linear{where} is named like any of {targets}")
    return model


def merge_lora(model):
    """Replace every `LoRALinear` by its merged ``nn.Linear`` (in place; returns the model)."""
    replace_modules(model, lambda name, m: isinstance(m, LoRALinear), lambda m: m.merged())
    return model


# --------------------------------------------------------------------------------------------
# Bottleneck adapters


class Adapter(nn.Module):
    """``x + up(gelu(down(x)))``: C -> bottleneck -> C, with ``up`` zero so it starts as x."""

    def __init__(self, d_model: int, bottleneck: int):
        super().__init__()
        check_int(d_model, "d_model", low=1)
        check_int(bottleneck, "bottleneck", low=1)
        self.down = nn.Linear(d_model, bottleneck)
        self.up = nn.Linear(bottleneck, d_model)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.gelu(self.down(x)))  # (B, T, C)


class WithAdapter(nn.Module):
    """A block's attention (returns ``(y, weights)``) or MLP (returns ``y``), then an
    `Adapter` on y; same call signature, so ``block(x)`` works unchanged."""

    def __init__(self, sublayer: nn.Module, adapter: Adapter):
        super().__init__()
        self.sublayer, self.adapter = sublayer, adapter

    def forward(self, x, *args, **kwargs):
        out = self.sublayer(x, *args, **kwargs)
        if isinstance(out, tuple):
            return (self.adapter(out[0]), *out[1:])
        return self.adapter(out)


def add_adapters(model, bottleneck: int = 16, where=("attn", "mlp"), blocks=None):
    """Freeze ``model`` and put an `Adapter` after each block's ``attn`` and/or ``mlp``, or
    only in the blocks whose indices ``blocks`` lists (as `chosen_blocks` reads them).

    As in Houlsby et al., the adapter sits before the residual addition. In place.
    """
    check_int(bottleneck, "bottleneck", low=1)
    where = (where,) if isinstance(where, str) else tuple(where)  # a name, not letters
    if not set(where) <= {"attn", "mlp"}:
        raise ValueError(f"where must name 'attn' and/or 'mlp', got {where}")
    chosen = chosen_blocks(model, blocks)  # checked before anything is frozen
    freeze(model)
    d = model.config.d_model
    for block in chosen:
        for name in where:
            adapter = Adapter(d, bottleneck).to(next(block.parameters()).device)
            setattr(block, name, WithAdapter(getattr(block, name), adapter))
    return model


# --------------------------------------------------------------------------------------------
# Prompt tuning


class PromptTuning(nn.Module):
    """A frozen GPT or Llama that reads ``n_virtual_tokens`` learned embeddings first.

    ``init_from_ids`` starts the virtual tokens at those tokens' embeddings (Lester et al.
    found this better than random); by default they copy the rows of random vocabulary
    tokens. The model runs as usual on the embeddings (``inputs_embeds``), so the virtual
    tokens get positions 0 .. P - 1 like any others. Logits and loss cover the real tokens.
    """

    def __init__(self, model, n_virtual_tokens: int, init_from_ids=None):
        super().__init__()
        check_int(n_virtual_tokens, "n_virtual_tokens", low=1)
        self.model = freeze(model)
        wte = model.get_input_embeddings()
        if init_from_ids is None:
            init_from_ids = torch.randint(0, wte.num_embeddings, (n_virtual_tokens,))
        ids = torch.as_tensor(init_from_ids, dtype=torch.long, device=wte.weight.device)
        if ids.shape != (n_virtual_tokens,):
            raise ValueError(f"init_from_ids needs {n_virtual_tokens} ids, got {ids.numel()}")
        self.prompt = nn.Parameter(wte.weight[ids].detach().clone())  # (P, C)

    def forward(self, idx: torch.Tensor, targets=None, *, logits_at=None) -> LMOutput:
        """idx (B, T) -> `LMOutput` with logits (B, T, V) for the real tokens only, or
        (N, V) at the True positions of ``logits_at`` (B, T), as in `lmlib.model.GPT`."""
        idx = check_token_ids(idx, self.model.get_input_embeddings().num_embeddings)
        m, (B, T), P = self.model, idx.shape, self.prompt.shape[0]
        if P + T > m.config.block_size:
            raise ValueError(f"{P} virtual + {T} tokens exceed block_size {m.config.block_size}")
        tokens = m.get_input_embeddings()(idx)  # (B, T, C)
        x = torch.cat([self.prompt.expand(B, P, -1), tokens], dim=1)  # (B, P + T, C)
        if logits_at is not None:  # the virtual tokens' positions are never scored
            for name, t in (("logits_at", logits_at), ("targets", targets)):
                if t is not None and (not isinstance(t, torch.Tensor) or t.shape != (B, T)):
                    raise ValueError(f"{name} must be a (B, T) = {(B, T)} tensor like idx, "
                                     f"got {t!r:.60}")  # fmt: skip
            at = torch.cat([logits_at.new_zeros(B, P), logits_at], dim=1)  # (B, P + T)
            if targets is not None:
                targets = torch.cat([targets.new_full((B, P), -100), targets], dim=1)
            return m(inputs_embeds=x, targets=targets, logits_at=at)  # logits (N, V)
        # The virtual tokens' outputs predict nothing: keep the real tokens' (B, T, V) only.
        logits = m(inputs_embeds=x).logits[:, P:].contiguous()
        return LMOutput(logits, lm_loss(logits, targets))  # targets -100: no loss there
