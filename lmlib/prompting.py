"""In-context learning: zero-shot and few-shot prompts, scored by their label words (Ch. 6).

A pretrained model classifies without training when the task is written as text it can
continue: "Review: a joy to watch\\nSentiment:" followed by " positive" or " negative". We
never parse free-form output; we compare the probability the model gives to each label
word (`lmlib.finetune.label_word_logprobs`). Few-shot prompting puts k solved examples,
the *demonstrations*, before the question.

Every few-shot prompt of an evaluation starts with the same demonstrations, so their keys
and values are computed once and shared (`label_word_logprobs_with_prefix`): with 8
demonstrations (about 200 tokens) in front of 30-token questions, this does a tenth of the
work. Shapes: B batch, T time (tokens), P cached prefix length, V vocabulary.
"""

from __future__ import annotations

import random

import torch

from lmlib.finetune import TEMPLATE, _right_pad
from lmlib.model import KVCache


def demonstrations(examples, k: int, seed: int = 0, balanced: bool = True) -> list:
    """``k`` examples drawn with a fixed seed; ``balanced`` takes k/2 of each of 2 labels.

    Balance matters: with unbalanced demonstrations a small model mostly copies the majority
    label (Zhao et al., 2021, "Calibrate before use").

    >>> from lmlib.data import LabeledSentence as S
    >>> pool = [S("good", 1), S("bad", 0), S("great", 1), S("awful", 0), S("fine", 1)]
    >>> [ex.label for ex in demonstrations(pool, 4)]
    [0, 1, 0, 1]
    """
    if k < 0 or k > len(examples):
        raise ValueError(f"k must be between 0 and the {len(examples)} examples, got {k}")
    rng = random.Random(seed)
    if not balanced:
        return rng.sample(list(examples), k)
    by_label: dict[int, list] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    if k % len(by_label) or any(len(v) < k // len(by_label) for v in by_label.values()):
        raise ValueError(f"cannot take {k} balanced examples from labels "
                         f"{ {lab: len(v) for lab, v in by_label.items()} }")  # fmt: skip
    picked = {lab: rng.sample(v, k // len(by_label)) for lab, v in sorted(by_label.items())}
    # Interleave the labels, so that the last demonstration is not always the same label.
    return [ex for group in zip(*picked.values(), strict=True) for ex in group]


def few_shot_prefix(demos, label_words, template: str = TEMPLATE, sep: str = "\n\n") -> str:
    """The demonstrations written out, each as ``template`` + its label word, then ``sep``.

    >>> from lmlib.data import LabeledSentence as S
    >>> few_shot_prefix([S("a joy", 1)], (" negative", " positive"))
    'Review: a joy\\nSentiment: positive\\n\\n'
    """
    return "".join(template.format(sentence=ex.sentence) + label_words[ex.label] + sep
                   for ex in demos)  # fmt: skip


def _shared_tokens(prefix_ids: list[int], full: list[list[int]]) -> int:
    """How many leading tokens of the tokenized ``prefix + prompt`` rows are the same in
    every row and in the prefix tokenized alone.

    Tokenizing the prefix alone is not enough: BPE can merge across the seam (a prefix ending
    in "\\n\\n" is one token alone, but may be split differently before "Review"). The tokens
    before the seam agree, and those are the ones we cache.
    """

    def common(a: list[int], b: list[int]) -> int:
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    n = common(prefix_ids, full[0])
    for row in full[1:]:
        n = common(full[0][:n], row)
    # Keep at least one token of each prompt to run: its output scores the first word token.
    return min([n] + [len(row) - 1 for row in full])


@torch.no_grad()
def label_word_logprobs_with_prefix(
    model, tokenizer, prefix: str, prompts: list[str], label_words, batch_size: int = 16
) -> torch.Tensor:
    """(N, n_labels): ``log p(word | prefix + prompt)``, the prefix computed only once.

    Equal to ``label_word_logprobs(model, tokenizer, [prefix + p for p in prompts], ...)``
    (a test checks it), for the book's `GPT` and `Llama`, which take a `KVCache`.
    """
    if not prompts:
        raise ValueError("no prompts to score")
    words = [tokenizer.encode(w, add_special_tokens=False) for w in label_words]
    if not all(words):
        raise ValueError(f"every label word needs at least one token: {label_words}")
    full = [tokenizer.encode(prefix + p) for p in prompts]  # each prompt tokenized once
    n_shared = _shared_tokens(tokenizer.encode(prefix), full)
    shared = full[0][:n_shared]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # Run the shared prefix once, batch of one.
    if n_shared:
        prefix_cache = KVCache.for_model(model, 1, n_shared)
        model(torch.tensor([shared], device=device), cache=prefix_cache)
    # Scoring word w after prompt i needs the rest of the prompt and w but its last token;
    # one-token words all share one run. Keyed by (prompt, tokens): rows must not merge
    # across prompts, whose cached prefix is the same but whose seams may differ.
    runs: dict[tuple, list] = {}
    for i, f in enumerate(full):
        for k, w in enumerate(words):
            runs.setdefault((i, tuple(f[n_shared:] + w[:-1])), []).append((k, w))
    keys = sorted(runs, key=lambda key: len(key[1]))  # similar lengths side by side
    out = torch.zeros(len(prompts), len(words))
    for start in range(0, len(keys), batch_size):
        chunk = keys[start : start + batch_size]
        idx = _right_pad([list(seq) for _, seq in chunk], device)  # (B, T)
        B, T = idx.shape
        cache = None
        if n_shared:
            cache = KVCache.for_model(model, B, n_shared + T)
            for layer, src in zip(cache.layers, prefix_cache.layers, strict=True):
                layer.k[:, :, :n_shared] = src.k  # (1, nkv, P, hs) broadcast to B rows
                layer.v[:, :, :n_shared] = src.v
                layer.length = n_shared
        logits = model(idx, cache=cache).logits  # (B, T, V)
        for b, (i, _) in enumerate(chunk):
            first = len(full[i]) - n_shared - 1  # the output at the prompt's last token
            for k, w in runs[chunk[b]]:
                logp = logits[b, first : first + len(w)].float().log_softmax(-1)  # (len(w), V)
                out[i, k] = logp[torch.arange(len(w)), w].sum().cpu()
    model.train(was_training)
    return out
