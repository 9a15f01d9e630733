"""Training a classifier: a language model fine-tuned on its label words, or an encoder with
a new head (Chapter 5).

`finetune_classifier` fine-tunes a copy of a pretrained language model by one method of
`lmlib.finetune` (LoRA, adapters, prompt tuning) or in full, on classification by label
words (`lmlib.classify`): the loss is the language-model loss on the label word only, and
accuracy compares the label words' scores. Every method trains with the same optimizer and
schedule on the same batches (`lmlib.train.Trainer`), so their results compare fairly.
`EncoderClassifier` is the classic alternative: an encoder (MiniLM) plus a linear head, all
weights trained (`train_encoder_classifier`).

Shape legend: B batch, T time, C channels (the encoder's hidden size).
"""

from __future__ import annotations

import copy
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.classify import LABEL_WORDS, TEMPLATE, label_word_logprobs, right_pad
from lmlib.finetune import PromptTuning, add_adapters, add_lora, trainable_parameters
from lmlib.model import GPT
from lmlib.runtime import check_int, check_number, eval_mode
from lmlib.train import TrainConfig, Trainer

METHOD_LR = {"lora": 2e-3, "adapter": 1e-3, "prompt": 3e-2, "full": 3e-5}  # AdamW defaults


def _device(model) -> torch.device:
    return next(model.parameters()).device


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


def _check_run(train, eval, steps, batch_size, lr, seed) -> None:
    """The arguments both trainers share, checked before any model is copied."""
    for name, rows in (("train", train), ("eval", eval)):
        if isinstance(rows, str) or not rows or not all(hasattr(r, "label") for r in rows):
            raise TypeError(f"{name} must be a non-empty list of LabeledSentence, got "
                            f"{rows!r:.50}")  # fmt: skip
    check_int(steps, "steps", low=1)
    check_int(batch_size, "batch_size", 1, len(train))  # rows are drawn without replacement
    check_number(lr, "lr", low=0, open_low=True)
    check_int(seed, "seed", low=0)


def _fit(model, batch_loss, steps: int, lr: float) -> dict:
    """Train with `lmlib.train.Trainer`: AdamW, the rate falling linearly from lr to zero.

    ``batch_loss(model, generator)`` draws a batch and returns its loss. Returns the numbers
    `finetune_classifier` reports; the model ends in eval mode.
    """
    device = _device(model)
    # No weight decay: it would pull pretrained weights and prompt embeddings towards zero.
    # The fused AdamW kernel updates each weight in one pass over its four tensors: for full
    # fine-tuning of SmolLM2's 135M weights on a CPU that is 0.16 s a step instead of
    # 0.5-1 s. It differs from the default kernel in the last bits only.
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0,
                                  fused=device.type in ("cpu", "cuda"))  # fmt: skip
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
                        alpha: float = 16, lora_targets=None, bottleneck: int = 16,
                        blocks=None,
                        n_virtual_tokens: int = 8,
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

    ``lora_targets`` names the linear layers LoRA wraps, as `lmlib.finetune.add_lora` reads
    them; by default every block's query and value projections (GPT-2's ``c_attn``, which
    also holds the keys). ``blocks`` puts LoRA or adapters in those blocks only
    (`lmlib.finetune.chosen_blocks`: ``range(-10, 0)`` is the last 10). Training only
    the last blocks saves time as well as parameters: the backward pass stops at the lowest
    block that trains.
    """
    if not isinstance(method, str) or method not in METHOD_LR:
        raise ValueError(f"method must be one of {list(METHOD_LR)}, got {method!r}")
    _check_run(train, eval, steps, batch_size, METHOD_LR[method] if lr is None else lr, seed)
    if not isinstance(template, str) or "{sentence}" not in template:
        raise ValueError(f"template must be a str with a {{sentence}} field, got {template!r}")
    for name, value in (
        ("r", r),
        ("bottleneck", bottleneck),
        ("n_virtual_tokens", n_virtual_tokens),
    ):
        check_int(value, name, low=1)
    check_number(alpha, "alpha")
    if lora_targets is not None and method != "lora":
        raise ValueError(f"lora_targets is for method 'lora', not {method!r}")
    if blocks is not None and method not in ("lora", "adapter"):
        raise ValueError(f"blocks is for methods 'lora' and 'adapter', not {method!r}")
    torch.manual_seed(seed)  # LoRA's A and the adapters' down-projections are random
    model = copy.deepcopy(model).eval()
    device = _device(model)
    if baseline is None:
        before = _evaluate(model, tokenizer, eval, template, label_words)
    else:
        before = baseline["accuracy_before"], baseline["eval_loss_before"]
    if method == "lora":
        if lora_targets is None:
            lora_targets = ("c_attn",) if isinstance(model, GPT) else ("q_proj", "v_proj")
        add_lora(model, lora_targets, r, alpha, blocks=blocks)
    elif method == "adapter":
        add_adapters(model, bottleneck, blocks=blocks)
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
        idx, targets = _lm_batch(tokenizer, examples, template, label_words, device)
        # the output layer at the label word's positions only: a fifth of SmolLM2's work
        return model(idx, targets, logits_at=targets != -100).loss

    result = _fit(model, batch_loss, steps, lr or METHOD_LR[method])
    after = _evaluate(model, tokenizer, eval, template, label_words)
    out = dict(method=method, accuracy_before=before[0], accuracy_after=after[0],
               eval_loss_before=before[1], eval_loss_after=after[1], batch_size=batch_size,
               **result)  # fmt: skip
    if keep_model:
        out["model"] = model.eval()
    return out


# --------------------------------------------------------------------------------------------
# An encoder with a linear head, all weights trained


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
    _check_run(train, eval, steps, batch_size, lr, seed)
    check_int(n_classes, "n_classes", low=2)
    check_int(max_length, "max_length", low=2)  # room for [CLS] and [SEP]
    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
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
