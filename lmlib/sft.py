"""Supervised fine-tuning (SFT) on conversations: the loss on the assistant's tokens only.

A chat model reads a conversation written out by its chat template (Chapter 6's
`lmlib.chat.chat_prompt`); SFT trains it on conversations whose assistant turns show the
behaviour we want. Four things come up, in this order:

- `encode_chat`: which tokens carry loss. The system prompt, the user's turns and the
  template's own tokens are given at inference; only the assistant's replies are to be
  learned, so every other token gets the label -100, which `lmlib.model.lm_loss` skips.
  Each reply's end-of-turn token keeps its label: that is how the model learns to stop.
- `pad_batch` and `pack`: examples of different lengths in one batch. Padding goes at the
  end of each row (under a causal mask nothing before it can see it); packing fills rows
  with whole examples instead, wasting no compute on padding.
- `token_logprobs`: the log-probability the model gives each labelled token. The
  preference and reinforcement-learning stages (`lmlib.preference`, `lmlib.grpo`) are built
  on it; `greedy_matches` reads from one forward pass whether greedy decoding would
  reproduce each reply.
- `shared_prefix_logits`: in a chat data set every example starts with the same system
  prompt. Those tokens run once per batch and every row reads them from a
  `lmlib.kvcache.KVCache`; ``share_prefix=True`` in the functions above does this, with the
  same results. `fit` trains with `lmlib.train.Trainer` on any of these losses.

Shape legend: B batch, T time (tokens), V vocabulary size.

>>> class Chars:  # a stand-in tokenizer: one token per character, a simple template
...     def encode(self, text, add_special_tokens=True):
...         return [ord(c) for c in text]
...     def apply_chat_template(self, messages, tokenize, add_generation_prompt):
...         text = "".join(f"<{m['role']}>{m['content']}|" for m in messages)
...         return text + ("<assistant>" if add_generation_prompt else "")
>>> example = encode_chat(Chars(), [{"role": "user", "content": "2+2"},
...                                 {"role": "assistant", "content": "4"}])
>>> "".join(chr(i) for i in example.ids)  # what the model reads
'<user>2+2|<assistant>4|'
>>> "".join(chr(i) if lab != -100 else "_" for i, lab in zip(example.ids, example.labels))
'_____________________4|'
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from lmlib.kvcache import KVCache
from lmlib.runtime import eval_mode, takes
from lmlib.train import History, TrainConfig, Trainer

IGNORE = -100  # the label of a token that carries no loss (PyTorch's and Hugging Face's)


@dataclass
class ChatTokens:
    """One tokenized conversation: ``ids`` and, aligned with them, ``labels`` (the token
    itself where it carries loss, -100 where not). Labels are not shifted: `pad_batch` and
    `pack` make the shifted targets."""

    ids: list[int]
    labels: list[int]

    @property
    def prompt_length(self) -> int:
        """Tokens before the first one that carries loss."""
        return next(i for i, label in enumerate(self.labels) if label != IGNORE)


def check_messages(messages) -> None:
    """Clear errors for a conversation SFT cannot use (see `encode_chat`)."""
    if not isinstance(messages, (list, tuple)) or not all(
        isinstance(m, dict) and {"role", "content"} <= m.keys() for m in messages
    ):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
    roles = [m["role"] for m in messages]
    if "assistant" not in roles:
        raise ValueError(f"messages need an assistant turn to learn from, got roles {roles}")
    if roles[0] == "assistant":
        raise ValueError("the conversation starts with the assistant: it needs a prompt first")
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and not str(m["content"]).strip():
            raise ValueError(f"message {i} is an empty assistant turn: nothing to learn")


def encode_chat(tokenizer, messages: list[dict], *, max_len: int | None = None,
                mask_prompt: bool = True) -> ChatTokens:  # fmt: skip
    """Tokenize a conversation through ``tokenizer``'s chat template, with labels only on
    the assistant's turns (``mask_prompt=False``: on every token, for comparison).

    The template renders the conversation one message at a time; each new piece of text is
    tokenized on its own, so the tokens before a reply are exactly those of the prompt the
    model reads at inference (``add_generation_prompt=True``). ``max_len`` (the model's
    ``block_size``) bounds the length: a longer prompt or conversation is an error.
    The module docstring shows a worked example.
    """
    check_messages(messages)

    def render(upto: int, cue: bool = False) -> str:
        return tokenizer.apply_chat_template(list(messages[:upto]), tokenize=False,
                                             add_generation_prompt=cue)  # fmt: skip

    ids: list[int] = []
    labels: list[int] = []
    done = ""  # the text tokenized so far

    def add(text: str, upto: int, learn: bool) -> None:
        nonlocal done
        if not text.startswith(done):
            raise ValueError("the chat template does not render a conversation as a prefix of "
                             f"its continuation (at message {upto - 1})")  # fmt: skip
        piece = tokenizer.encode(text[len(done) :], add_special_tokens=False)
        ids.extend(piece)
        labels.extend(piece if learn or not mask_prompt else [IGNORE] * len(piece))
        done = text

    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            add(render(i, cue=True), i, learn=False)  # the template's cue: "<assistant>"
            if max_len is not None and len(ids) >= max_len:
                raise ValueError(f"the prompt before message {i} takes {len(ids)} tokens; the "
                                 f"reply needs room within max_len={max_len}")  # fmt: skip
        add(render(i + 1), i + 1, learn=message["role"] == "assistant")
    if max_len is not None and len(ids) > max_len:
        raise ValueError(f"the conversation takes {len(ids)} tokens, more than "
                         f"max_len={max_len}; shorten it")  # fmt: skip
    return ChatTokens(ids, labels)


def shift_labels(labels: list[int]) -> list[int]:
    """Targets for a causal model: position t predicts token t + 1, the last one nothing.

    >>> shift_labels([-100, -100, 7, 8])
    [-100, 7, 8, -100]
    """
    return list(labels[1:]) + [IGNORE]


def pad_batch(examples: list[ChatTokens], pad_id: int, device=None):
    """idx and targets (B, T): each row padded at its end (idx with ``pad_id``, targets
    with -100), targets shifted by one (`shift_labels`).

    >>> idx, targets = pad_batch([ChatTokens([1, 2, 3], [-100, 2, 3]),
    ...                           ChatTokens([4, 5], [-100, 5])], pad_id=0)
    >>> idx.tolist(), targets.tolist()
    ([[1, 2, 3], [4, 5, 0]], [[2, 3, -100], [5, -100, -100]])
    """
    if not examples:
        raise ValueError("examples is empty: nothing to batch")
    T = max(len(e.ids) for e in examples)
    idx = torch.full((len(examples), T), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    for b, e in enumerate(examples):
        idx[b, : len(e.ids)] = torch.tensor(e.ids)
        targets[b, : len(e.ids)] = torch.tensor(shift_labels(e.labels))
    return idx.to(device), targets.to(device)


def pack(examples: list[ChatTokens], block_size: int, pad_id: int, device=None):
    """Whole examples packed into rows of ``block_size`` tokens: idx and targets (B, T).

    Each example goes into the first row with room for it (first-fit, longest first), so
    no example is cut; what is left of a row is padding. Targets are shifted within each
    example, so the last token of one example never learns to predict the next example.
    Its attention is not cut: a token may attend to the examples before it in the same
    row. That is what packed pre-training does; for SFT it is a small approximation that
    `pad_batch` avoids.

    >>> idx, targets = pack([ChatTokens([1, 2], [-100, 2]), ChatTokens([3, 4, 5], [-100, 4, 5]),
    ...                      ChatTokens([6, 7], [-100, 7])], block_size=5, pad_id=0)
    >>> idx.tolist(), targets.tolist()
    ([[3, 4, 5, 1, 2], [6, 7, 0, 0, 0]], [[4, 5, -100, 2, -100], [7, -100, -100, -100, -100]])
    """
    if not examples:
        raise ValueError("examples is empty: nothing to pack")
    too_long = [len(e.ids) for e in examples if len(e.ids) > block_size]
    if too_long:
        raise ValueError(f"an example of {max(too_long)} tokens does not fit in "
                         f"block_size={block_size}")  # fmt: skip
    rows: list[tuple[list[int], list[int]]] = []
    for e in sorted(examples, key=lambda e: -len(e.ids)):  # stable: ties keep their order
        row = next((r for r in rows if len(r[0]) + len(e.ids) <= block_size), None)
        if row is None:
            row = ([], [])
            rows.append(row)
        row[0].extend(e.ids)
        row[1].extend(shift_labels(e.labels))
    idx = torch.full((len(rows), block_size), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), block_size), IGNORE, dtype=torch.long)
    for b, (row_ids, row_targets) in enumerate(rows):
        idx[b, : len(row_ids)] = torch.tensor(row_ids)
        targets[b, : len(row_targets)] = torch.tensor(row_targets)
    return idx.to(device), targets.to(device)


def common_prefix_length(idx: torch.Tensor) -> int:
    """How many leading tokens every row of idx (B, T) has in common.

    >>> common_prefix_length(torch.tensor([[5, 6, 7, 8], [5, 6, 9, 8]]))
    2
    """
    same = (idx == idx[:1]).all(dim=0).int()  # (T,) column equal in every row
    return int(same.cumprod(dim=0).sum())


def shared_prefix_logits(model, idx: torch.Tensor, n_shared: int):
    """``model(idx).logits`` in two parts, computing the first ``n_shared`` tokens, the same
    in every row, once: head (1, P, V) for them and tail (B, T - P, V) for the rest.

    The shared tokens run in a batch of one and fill a `lmlib.kvcache.KVCache`, which every
    row then reads (`lmlib.kvcache.KVCache.load_prefix`); the rows run only their own
    tokens. Gradients flow through the cache, so training gets the same gradients too (a
    test checks both). In a chat data set the system prompt and the template's first tokens
    are the same in every example: on a CPU that halves the cost of a short example.
    ``torch.cat([head.expand(B, -1, -1), tail], 1)`` is the whole (B, T, V), but nothing
    needs the head copied into every row.
    """
    B, T = idx.shape
    if not 0 < n_shared < T:
        raise ValueError(f"n_shared must lie in [1, {T - 1}] for {T} tokens, got {n_shared}")
    if not (idx[:, :n_shared] == idx[:1, :n_shared]).all():
        raise ValueError(f"the first {n_shared} tokens differ between rows: nothing to share")
    prefix = KVCache.for_model(model, 1, n_shared)
    head = model(idx[:1, :n_shared], cache=prefix).logits  # (1, P, V)
    cache = KVCache.for_model(model, B, T)
    cache.load_prefix(prefix)  # (1, nkv, P, hs) copied into every row
    return head, model(idx[:, n_shared:], cache=cache).logits  # (1, P, V), (B, T - P, V)


def logit_parts(model, idx: torch.Tensor, attention_mask=None, share_prefix: bool = False):
    """``model(idx)``'s logits as float (head, tail): `shared_prefix_logits` for the leading
    tokens every row has in common (``share_prefix``; needs a model that takes a cache and
    no ``attention_mask``), else (None, all the logits (B, T, V))."""
    n = common_prefix_length(idx) if share_prefix and attention_mask is None else 0
    if 1 < n < idx.size(1):
        head, tail = shared_prefix_logits(model, idx, n)
        return head.float(), tail.float()
    out = model(idx, attention_mask=attention_mask)
    return None, getattr(out, "logits", out).float()  # (B, T, V)


def answer_logits(model, idx: torch.Tensor, targets: torch.Tensor, share_prefix: bool = False,
                  attention_mask: torch.Tensor | None = None):  # fmt: skip
    """The logits at the labelled positions only, (n, V) float in row-major order, with each
    one's row (n,) and target token (n,): what the loss and a KL divergence between two
    models along the answers need, without (B, T, V) numbers for the prompts.

    A model that takes ``logits_at`` (lmlib's GPT and Llama) computes its output layer at
    those positions alone; with SmolLM2 that layer is a fifth of the work at each position.
    ``share_prefix`` and ``attention_mask`` as in `logit_parts`.

    >>> model = lambda idx, attention_mask=None: torch.arange(12.0).view(1, 3, 4)
    >>> rows, ids, logits = answer_logits(model, torch.tensor([[0, 1, 2]]),
    ...                                   torch.tensor([[-100, 3, -100]]))
    >>> rows.tolist(), ids.tolist(), logits.tolist()
    ([0], [3], [[4.0, 5.0, 6.0, 7.0]])
    """
    labelled = targets != IGNORE
    rows, cols = labelled.nonzero(as_tuple=True)  # (n,) each, row-major
    if not takes(model, "logits_at"):
        head, tail = logit_parts(model, idx, attention_mask, share_prefix)
    else:
        n = common_prefix_length(idx) if share_prefix and attention_mask is None else 0
        head = None
        if 1 < n < idx.size(1):  # as shared_prefix_logits, at the labelled positions only
            head_at = labelled[:, :n].any(dim=0, keepdim=True)  # (1, P): labelled in any row
            prefix = KVCache.for_model(model, 1, n)
            head = model(idx[:1, :n], cache=prefix, logits_at=head_at).logits.float()
            head_row = head_at[0].cumsum(0) - 1  # (P,): a prefix position's row of head
            cache = KVCache.for_model(model, *idx.shape)
            cache.load_prefix(prefix)
            tail = model(idx[:, n:], cache=cache, logits_at=labelled[:, n:]).logits.float()
        else:
            tail = model(idx, attention_mask=attention_mask, logits_at=labelled).logits.float()
        if head is None:
            return rows, targets[rows, cols], tail  # (n, V) already
        logits = tail.new_empty(len(rows), tail.size(-1))  # (n, V)
        shared = cols < n
        logits[shared] = head[head_row[cols[shared]]]
        logits[~shared] = tail  # the rest, in the same row-major order
        return rows, targets[rows, cols], logits
    P = 0 if head is None else head.size(1)
    logits = tail.new_empty(len(rows), tail.size(-1))  # (n, V)
    shared = cols < P  # labelled positions inside the shared prefix: the head's rows
    if shared.any():
        logits[shared] = head[0, cols[shared]]
    logits[~shared] = tail[rows[~shared], cols[~shared] - P]
    return rows, targets[rows, cols], logits


def token_logprobs(model, idx: torch.Tensor, targets: torch.Tensor,
                   attention_mask: torch.Tensor | None = None,
                   share_prefix: bool = False) -> torch.Tensor:  # fmt: skip
    """log p(targets[b, t] | idx[b, :t + 1]) at each labelled position, 0 elsewhere: (B, T).

    ``targets`` are shifted as `pad_batch` makes them (-100: no label). ``attention_mask``
    marks left padding, as in `lmlib.generate`; ``share_prefix`` as in `logit_parts`. Summed
    over t this is the log-probability of a whole reply, the quantity DPO compares; GRPO
    weighs it token by token.

    A "model" whose logits are all zero gives each of V = 4 tokens log(1/4) = -1.3863:

    >>> model = lambda idx, attention_mask=None: torch.zeros(*idx.shape, 4)
    >>> token_logprobs(model, torch.tensor([[0, 1, 2]]), torch.tensor([[1, 2, -100]]))
    tensor([[-1.3863, -1.3863,  0.0000]])
    """
    if targets.shape != idx.shape:
        raise ValueError(f"targets must have idx's shape {tuple(idx.shape)}, "
                         f"got {tuple(targets.shape)}")  # fmt: skip
    _, ids, logits = answer_logits(model, idx, targets, share_prefix, attention_mask)
    # log p(token) = logit(token) - logsumexp(logits): no (n, V) log-softmax kept
    picked = logits.gather(-1, ids[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    out = picked.new_zeros(idx.shape)  # (B, T)
    return out.masked_scatter(targets != IGNORE, picked)


def sft_loss(model, idx: torch.Tensor, targets: torch.Tensor,
             share_prefix: bool = False) -> torch.Tensor:  # fmt: skip
    """Mean cross-entropy over the batch's labelled tokens: `lmlib.model.lm_loss`, with the
    option to share the common prefix (`logit_parts`)."""
    n = (targets != IGNORE).sum()
    if n == 0:
        raise ValueError("no token in the batch carries a label: nothing to learn")
    return -token_logprobs(model, idx, targets, share_prefix=share_prefix).sum() / n


@torch.no_grad()
def greedy_matches(model, idx: torch.Tensor, targets: torch.Tensor,
                   share_prefix: bool = False) -> torch.Tensor:  # fmt: skip
    """(B,) bool: would greedy decoding after each row's prompt produce exactly its labelled
    reply? It would if and only if, reading the reply so far, the model's most likely next
    token is always the reply's next token (its end-of-turn token included), so one forward
    pass decides what a token-by-token generation would.

    >>> logits = torch.tensor([[[0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]]])
    >>> model = lambda idx, attention_mask=None: logits.expand(len(idx), -1, -1)
    >>> greedy_matches(model, torch.tensor([[0, 1, 2], [0, 1, 2]]),
    ...                torch.tensor([[1, 2, -100], [1, 0, -100]]))
    tensor([ True, False])
    """
    with eval_mode(model) if isinstance(model, torch.nn.Module) else nullcontext():
        head, tail = logit_parts(model, idx, share_prefix=share_prefix)
        best = tail.argmax(-1)  # (B, T) or (B, T - P)
        if head is not None:
            best = torch.cat([head.argmax(-1).expand(len(idx), -1), best], dim=1)  # (B, T)
    labelled = targets != IGNORE
    return ((best == targets) | ~labelled).all(dim=-1) & labelled.any(dim=-1)


def fit(model, batch_loss, steps: int, lr: float, *, warmup: int = 0, grad_clip: float = 1.0,
        progress: bool = True) -> History:  # fmt: skip
    """Train ``model``'s trainable weights for ``steps`` AdamW steps with `lmlib.train.Trainer`:
    ``batch_loss(model, generator)`` returns one batch's loss (a LoRA model's, a reward
    model's, or `lmlib.grpo.GRPO`). The rate warms up for ``warmup`` steps, then falls
    linearly to zero; no weight decay (it would pull the adapters towards zero). Returns the
    `lmlib.train.History`; the model ends in eval mode.
    """
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (add LoRA or unfreeze some)")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    cfg = TrainConfig(max_iters=steps, learning_rate=lr, min_lr=0.0, warmup_iters=warmup,
                      decay="linear", weight_decay=0.0, grad_clip=grad_clip, eval_iters=0,
                      log_interval=1, progress=progress, device=str(device))  # fmt: skip
    history = Trainer(model, cfg=cfg, loss_fn=batch_loss, optimizer=optimizer).train()
    model.eval()
    return history
