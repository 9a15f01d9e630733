"""Parameter-efficient fine-tuning (Chapter 5): train a few new weights, freeze the rest.

Each method adds one idea to a frozen pretrained model, and each starts as "no change":

- `LoRALinear` (Hu et al. 2021): beside a frozen ``W`` learn a low-rank update, so the layer
  computes ``W x + (alpha / r) B A x`` with A (r, in) and B (out, r); B starts at zero.
  `merge_lora` folds ``W + (alpha / r) B A`` back into one plain ``nn.Linear``.
- `Adapter` (Houlsby et al. 2019): a small bottleneck MLP with a residual connection after a
  block's attention and MLP outputs; its up-projection starts at zero.
- `PromptTuning` (Lester et al. 2021): learned "virtual token" embeddings put in front of
  the input; the model itself does not change at all.

`finetune_classifier` compares them on classification by label words (`lmlib.classify`):
trained with the language-model loss on the label word only, through `lmlib.train.Trainer`.
`EncoderClassifier` is the classic alternative: an encoder (MiniLM) plus a linear head, all
weights trained. `replace_modules` does the model surgery, here and in `lmlib.quantization`.

Shape legend: B batch, T time, P virtual tokens, C channels (d_model), V vocabulary, r rank.
"""

from __future__ import annotations

import copy
import math
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.classify import LABEL_WORDS, TEMPLATE, label_word_logprobs, right_pad
from lmlib.model import GPT, Block, LMOutput, lm_loss
from lmlib.runtime import eval_mode
from lmlib.train import TrainConfig, Trainer

METHOD_LR = {"lora": 2e-3, "adapter": 1e-3, "prompt": 3e-2, "full": 3e-5}  # AdamW defaults


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


def _device(model) -> torch.device:
    return next(model.parameters()).device


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


def add_lora(model, targets=("q_proj", "v_proj"), r: int = 8, alpha: float = 16,
             dropout: float = 0.0):  # fmt: skip
    """Freeze ``model`` and wrap each ``nn.Linear`` named by ``targets`` in `LoRALinear`.

    A target matches a module whose dotted name ends with it: ``"q_proj"`` (Llama),
    ``"c_attn"`` (GPT-2) or ``"attn.c_proj"`` (GPT-2's attention output, not its MLP's).
    Works in place and returns the model.
    """
    freeze(model)

    def match(name, module):
        return isinstance(module, nn.Linear) and name_ends_with(name, targets)

    if replace_modules(model, match, lambda lin: LoRALinear(lin, r, alpha, dropout)) == 0:
        raise ValueError(f"no nn.Linear in the model is named like any of {targets}")
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


def add_adapters(model, bottleneck: int = 16, where=("attn", "mlp")):
    """Freeze ``model`` and put an `Adapter` after each block's ``attn`` and/or ``mlp``.

    As in Houlsby et al., the adapter sits before the residual addition. In place.
    """
    freeze(model)
    d = model.config.d_model
    for block in [m for m in model.modules() if isinstance(m, Block)]:
        for name in where:
            adapter = Adapter(d, bottleneck).to(_device(block))
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
        self.model = freeze(model)
        wte = model.get_input_embeddings()
        if init_from_ids is None:
            init_from_ids = torch.randint(0, wte.num_embeddings, (n_virtual_tokens,))
        ids = torch.as_tensor(init_from_ids, dtype=torch.long, device=wte.weight.device)
        if ids.shape != (n_virtual_tokens,):
            raise ValueError(f"init_from_ids needs {n_virtual_tokens} ids, got {ids.numel()}")
        self.prompt = nn.Parameter(wte.weight[ids].detach().clone())  # (P, C)

    def forward(self, idx: torch.Tensor, targets=None) -> LMOutput:
        """idx (B, T) -> `LMOutput` with logits (B, T, V) for the real tokens only."""
        m, (B, T), P = self.model, idx.shape, self.prompt.shape[0]
        if P + T > m.config.block_size:
            raise ValueError(f"{P} virtual + {T} tokens exceed block_size {m.config.block_size}")
        tokens = m.get_input_embeddings()(idx)  # (B, T, C)
        x = torch.cat([self.prompt.expand(B, P, -1), tokens], dim=1)  # (B, P + T, C)
        # The virtual tokens' outputs predict nothing: keep the real tokens' (B, T, V) only.
        logits = m(inputs_embeds=x).logits[:, P:].contiguous()
        return LMOutput(logits, lm_loss(logits, targets))  # targets -100: no loss there


# --------------------------------------------------------------------------------------------
# Fine-tuning a classifier, each method on the same batches


def _evaluate(model, tokenizer, examples, template, label_words) -> tuple[float, float]:
    """Accuracy, and the loss -log p(right label word | prompt) averaged over ``examples``."""
    prompts = [template.format(sentence=ex.sentence) for ex in examples]
    logp = label_word_logprobs(model, tokenizer, prompts, label_words)  # (N, n_labels)
    labels = torch.tensor([ex.label for ex in examples])
    accuracy = (logp.argmax(-1) == labels).float().mean().item()
    return accuracy, -logp[torch.arange(len(labels)), labels].mean().item()


def _lm_batch(tokenizer, examples, template, label_words, device):
    """idx and targets (B, T) for prompt + label word, with targets only on the word."""
    seqs, targets = [], []
    for ex in examples:
        p = tokenizer.encode(template.format(sentence=ex.sentence))
        w = tokenizer.encode(label_words[ex.label], add_special_tokens=False)
        seqs.append(p + w)
        targets.append([-100] * (len(p) - 1) + w + [-100])  # position t predicts token t+1
    return right_pad(seqs, device=device), right_pad(targets, fill=-100, device=device)


def _memory(model, optimizer, device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    # A parameter the optimizer has state for had a gradient of its own size at each step.
    stepped = [p for p in model.parameters() if p in optimizer.state]
    tensors = [*model.parameters(), *stepped]
    tensors += [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    mb = sum(t.numel() * t.element_size() for t in tensors) / 2**20
    return mb, "params + grads + AdamW state (CPU; activations not counted)"


def _fit(model, batch_loss, steps: int, lr: float) -> dict:
    """Train with `lmlib.train.Trainer`: AdamW, the rate falling linearly from lr to zero.

    ``batch_loss(model, generator)`` draws a batch and returns its loss. Returns the numbers
    `finetune_classifier` reports; the model ends in eval mode.
    """
    device = _device(model)
    # No weight decay: it would pull pretrained weights and prompt embeddings towards zero.
    # PyTorch's default AdamW kernel: configure_optimizer's fused one differs in the last
    # bits, and the book's recorded fine-tuning runs used this one.
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    # Linear decay to zero, no warm-up: the last, small steps average out the noise of tiny
    # batches. No clipping, full precision and no evaluation inside the loop.
    cfg = TrainConfig(max_iters=steps, learning_rate=lr, min_lr=0.0, warmup_iters=0,
                      decay="linear", weight_decay=0.0, grad_clip=None, eval_iters=0,
                      mixed_precision="off", progress=False, device=str(device))  # fmt: skip
    trainer = Trainer(model, cfg=cfg, loss_fn=batch_loss, optimizer=optimizer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    history = trainer.train()
    seconds = time.perf_counter() - start  # training steps only, no evaluation
    model.eval()
    memory_mb, memory_measure = _memory(model, optimizer, device)
    return dict(trainable_params=trainable_parameters(model),
                total_params=sum(p.numel() for p in model.parameters()), seconds=seconds,
                peak_memory_mb=memory_mb, memory_measure=memory_measure, steps=steps, lr=lr,
                losses=history.train_loss)  # fmt: skip


def finetune_classifier(model, tokenizer, method: str, train, eval, *, steps: int = 60,
                        batch_size: int = 4, lr: float | None = None, seed: int = 0,
                        template: str = TEMPLATE, label_words=LABEL_WORDS, r: int = 8,
                        alpha: float = 16, bottleneck: int = 16, n_virtual_tokens: int = 8,
                        prompt_init: str = "Is this movie review negative or positive?",
                        baseline: dict | None = None,
                        keep_model: bool = False) -> dict:  # fmt: skip
    """Fine-tune a copy of ``model`` by ``method`` on ``train``; accuracy on ``eval``.

    ``method`` is "lora", "adapter", "prompt" or "full"; ``train`` and ``eval`` are lists of
    `lmlib.data.LabeledSentence`. The loss is the LM loss on the label word only; each step
    draws ``batch_size`` random training rows. The caller's model is never changed.

    Returns a dict: method, trainable_params, total_params, accuracy_before/after,
    eval_loss_before/after (mean -log p of the right label word), seconds (training steps
    only), peak_memory_mb with memory_measure saying what it counts, steps, batch_size, lr
    and the losses per step. The "before" scores are the plain model's zero-shot ones, the
    same for every method: pass an earlier result as ``baseline`` to reuse them. With
    ``keep_model`` the fine-tuned copy is returned too, as ``"model"`` (in eval mode).
    """
    if method not in METHOD_LR:
        raise ValueError(f"method must be one of {list(METHOD_LR)}, got {method!r}")
    torch.manual_seed(seed)  # LoRA's A and the adapters' down-projections are random
    model = copy.deepcopy(model).eval()
    device = _device(model)
    if baseline is None:
        before = _evaluate(model, tokenizer, eval, template, label_words)
    else:
        before = baseline["accuracy_before"], baseline["eval_loss_before"]
    if method == "lora":
        add_lora(model, ("c_attn",) if isinstance(model, GPT) else ("q_proj", "v_proj"),
                 r, alpha)  # fmt: skip
    elif method == "adapter":
        add_adapters(model, bottleneck)
    elif method == "prompt":  # start from the embeddings of a task description
        ids = tokenizer.encode(prompt_init, add_special_tokens=False)
        model = PromptTuning(model, n_virtual_tokens, (ids * n_virtual_tokens)[:n_virtual_tokens])
    else:  # "full": every weight, even if the caller froze some
        model.requires_grad_(True)
    # Rows come from Python's random.Random(seed), not the trainer's generator, so that
    # every method trains on the same batches as in the book's recorded runs.
    rng = random.Random(seed)

    def batch_loss(model, generator):
        examples = rng.sample(train, batch_size)
        return model(*_lm_batch(tokenizer, examples, template, label_words, device)).loss

    result = _fit(model, batch_loss, steps, lr or METHOD_LR[method])
    after = _evaluate(model, tokenizer, eval, template, label_words)
    out = dict(method=method, accuracy_before=before[0], accuracy_after=after[0],
               eval_loss_before=before[1], eval_loss_after=after[1], batch_size=batch_size,
               **result)  # fmt: skip
    if keep_model:
        out["model"] = model.eval()
    return out


# --------------------------------------------------------------------------------------------
# Full fine-tuning of a small encoder classifier


class EncoderClassifier(nn.Module):
    """A Hugging Face encoder (e.g. MiniLM's ``BertModel``) plus a linear head on a pooled
    sentence vector: ``"mean"`` over real tokens (as MiniLM was trained) or ``"cls"``."""

    def __init__(self, encoder: nn.Module, n_classes: int, pooling: str = "mean"):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.encoder, self.pooling = encoder, pooling
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)

    def forward(self, input_ids, attention_mask) -> torch.Tensor:
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = h[:, 0]  # (B, C)
        else:  # padding must not pull the mean towards zero
            mask = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, C)
        return self.head(pooled)  # (B, n_classes)


def train_encoder_classifier(encoder, tokenizer, train, eval, *, steps: int = 150,
                             batch_size: int = 16, lr: float = 1e-4, seed: int = 0,
                             pooling: str = "mean", n_classes: int = 2,
                             max_length: int = 64) -> dict:  # fmt: skip
    """Train a copy of ``encoder`` and a new head on ``train``; accuracy on ``eval``."""
    torch.manual_seed(seed)
    model = EncoderClassifier(copy.deepcopy(encoder), n_classes, pooling)
    device = _device(encoder)
    model.to(device).requires_grad_(True)

    def encode(examples):
        batch = tokenizer([ex.sentence for ex in examples], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)  # fmt: skip
        return batch["input_ids"], batch["attention_mask"]

    @torch.no_grad()
    def evaluate():  # accuracy and cross-entropy on eval
        with eval_mode(model):
            logits = torch.cat([model(*encode(eval[i : i + 64])).cpu()
                                for i in range(0, len(eval), 64)])  # fmt: skip
        labels = torch.tensor([ex.label for ex in eval])
        return (logits.argmax(-1) == labels).float().mean().item(), F.cross_entropy(logits, labels)

    before = evaluate()  # a random head: about chance
    rng = random.Random(seed)

    def batch_loss(model, generator):  # rows from rng, as in finetune_classifier
        examples = rng.sample(train, batch_size)
        labels = torch.tensor([ex.label for ex in examples], device=device)
        return F.cross_entropy(model(*encode(examples)), labels)

    result = _fit(model, batch_loss, steps, lr)
    after = evaluate()
    return dict(method="full", model="EncoderClassifier", accuracy_before=before[0],
                accuracy_after=after[0], eval_loss_before=before[1].item(),
                eval_loss_after=after[1].item(), batch_size=batch_size, **result)  # fmt: skip
