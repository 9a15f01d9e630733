"""In-context learning: zero-shot and few-shot prompts, scored by their label words (Ch. 6).

A pretrained model classifies without training when the task is written as text it can
continue: "Review: a joy to watch\\nSentiment:" followed by " positive" or " negative"
(`lmlib.classify`). Few-shot prompting puts k solved examples, the *demonstrations*, before
the question: `demonstrations` picks them and `few_shot_prefix` writes them out. Every
prompt of an evaluation starts with the same prefix, so `lmlib.classify.label_word_logprobs`
computes it once and shares it (its ``prefix`` argument).

>>> import torch
>>> from lmlib.classify import label_word_logprobs
>>> from lmlib.data import LabeledSentence as S
>>> from lmlib.model import GPT, GPTConfig
>>> class Bytes:  # one token per byte
...     def encode(self, text, add_special_tokens=True):
...         return list(text.encode())
>>> _ = torch.manual_seed(0)
>>> model = GPT(GPTConfig(block_size=64, vocab_size=256, n_layers=1, n_heads=2, d_model=8))
>>> prefix = few_shot_prefix([S("fun", 1), S("dull", 0)], (" no", " yes"), "{sentence}:")
>>> prefix
'fun: yes\\n\\ndull: no\\n\\n'
>>> scores = label_word_logprobs(model, Bytes(), ["great:", "bad:"], [" no", " yes"],
...                              prefix=prefix)  # the prefix runs once
>>> tuple(scores.shape)  # (prompts, label words): log p(word | prefix + prompt)
(2, 2)
"""

from __future__ import annotations

import random

from lmlib.classify import TEMPLATE
from lmlib.runtime import check_int


def demonstrations(examples, k: int, seed: int = 0, balanced: bool = True) -> list:
    """``k`` examples drawn with a fixed seed; ``balanced`` takes k/2 of each of 2 labels.

    Balance matters: with unbalanced demonstrations a small model mostly copies the majority
    label (Zhao et al., 2021, "Calibrate before use").

    >>> from lmlib.data import LabeledSentence as S
    >>> pool = [S("good", 1), S("bad", 0), S("great", 1), S("awful", 0), S("fine", 1)]
    >>> [ex.label for ex in demonstrations(pool, 4)]
    [0, 1, 0, 1]
    """
    check_int(k, "k", low=0)
    check_int(seed, "seed", low=0)
    if k > len(examples):
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
    if not isinstance(template, str) or "{sentence}" not in template:
        raise ValueError(f"template must be a str with a {{sentence}} field, got {template!r}")
    if isinstance(label_words, str):
        raise TypeError(f"label_words must be a list of words, one per label, got {label_words!r}")
    return "".join(template.format(sentence=ex.sentence) + label_words[ex.label] + sep
                   for ex in demos)  # fmt: skip
