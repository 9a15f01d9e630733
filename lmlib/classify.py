"""Classification by label words: a language model as a classifier, without a new head (Ch. 6).

A sentence goes into a template such as ``"Review: {sentence}\\nSentiment:"``, and the label
whose word (`` positive`` or `` negative``) the model finds most likely wins. We never parse
free-form output; we compare ``log p(word | prompt)``, summed over the word's tokens
(`label_word_logprobs`, `classify`). Fine-tuning (`lmlib.finetune`) trains on the same
scores, and few-shot prompting (`lmlib.prompting`) puts solved examples in a ``prefix``.

Every few-shot prompt of an evaluation starts with the same prefix, so its keys and values
are computed once and shared through `lmlib.kvcache.KVCache.load_prefix`: with 8
demonstrations (about 200 tokens) in front of 30-token questions, that is a tenth of the
work, and the scores are the same as for each full prompt from scratch (a test checks it).

Shape legend: N prompts, B batch, T time (tokens), P cached prefix length, V vocabulary.

>>> right_pad([[5, 6, 7], [8]], fill=-100)
tensor([[   5,    6,    7],
        [   8, -100, -100]])
"""

from __future__ import annotations

import torch

from lmlib.kvcache import KVCache
from lmlib.runtime import check_int, eval_mode, takes

TEMPLATE = "Review: {sentence}\nSentiment:"  # short prompts keep CPU training fast
LABEL_WORDS = (" negative", " positive")  # index = SST-2 label; the space belongs to the word


def right_pad(seqs, fill: int = 0, device=None) -> torch.Tensor:
    """Token lists as one (B, T) long tensor, each row padded at its end with ``fill``.

    Causal attention never looks ahead, so padding after the last real token cannot change
    anything before it: a right-padded batch needs no attention mask.
    """
    if isinstance(seqs, (str, torch.Tensor)) or not seqs:
        raise ValueError(f"seqs must be a non-empty list of token-id lists, got {seqs!r:.50}")
    check_int(fill, "fill")
    out = torch.full((len(seqs), max(map(len, seqs))), fill, dtype=torch.long)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out.to(device)


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
def label_word_logprobs(model, tokenizer, prompts, label_words, *, prefix: str = "",
                        batch_size: int = 16) -> torch.Tensor:  # fmt: skip
    """(N, n_labels) tensor: ``log p(word | prefix + prompt)`` summed over the word's tokens.

    The word is tokenized on its own and appended to the prompt's tokens, exactly as in
    training. Works with our models and with Hugging Face ones (anything whose output has
    ``.logits``, or is the logits). With a ``prefix`` and a model that takes a `KVCache`,
    the tokens the prompts share with the prefix run once, in a batch of one. With a model
    that takes ``logits_at`` (lmlib's), the output layer runs only where a word is scored.

    A worked example with a "model" that knows nothing (all logits 0, so each of the V = 4
    tokens has probability 1/4, log(1/4) = -1.3863): a word of two tokens gets twice that.

    >>> model = torch.nn.Embedding(4, 4)  # token -> its next-token logits (V = 4)
    >>> _ = torch.nn.init.zeros_(model.weight)
    >>> class Chars:  # one token per character: "a" -> 0, "b" -> 1, ...
    ...     def encode(self, text, add_special_tokens=True):
    ...         return [ord(c) - ord("a") for c in text]
    >>> label_word_logprobs(model, Chars(), ["ab", "c"], ["a", "bc"])
    tensor([[-1.3863, -2.7726],
            [-1.3863, -2.7726]])
    """
    for name, texts in (("prompts", prompts), ("label_words", label_words)):
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"{name} must be a list of strings (a single string would be "
                            f"read letter by letter), got {texts!r:.50}")  # fmt: skip
    if not prompts:
        raise ValueError("prompts is empty: no prompts to score")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    check_int(batch_size, "batch_size", low=1)
    words = [tokenizer.encode(w, add_special_tokens=False) for w in label_words]
    if not all(words):
        raise ValueError(f"every label word needs at least one token: {label_words}")
    device = next(model.parameters()).device
    full = [tokenizer.encode(prefix + p) for p in prompts]  # each prompt tokenized once
    n_shared = 0
    # Hugging Face models and lmlib.finetune.PromptTuning take no cache: full prompts there.
    if prefix and takes(model, "cache"):
        n_shared = _shared_tokens(tokenizer.encode(prefix), full)
    # Scoring word w after prompt i needs the outputs at the prompt's last token and at each
    # of w's tokens but the last, so we run the prompt's uncached tokens + w[:-1]. One-token
    # words all share one run; so do equal rows of different prompts.
    runs: dict[tuple, list] = {}
    for i, f in enumerate(full):
        first = len(f) - n_shared - 1  # the row's output at the prompt's last token
        for k, w in enumerate(words):
            runs.setdefault(tuple(f[n_shared:] + w[:-1]), []).append((i, k, first, w))
    seqs = sorted(runs, key=len)  # similar lengths side by side: less padding
    at_some = takes(model, "logits_at")
    out = torch.zeros(len(prompts), len(words))
    with eval_mode(model):
        if n_shared:
            prefix_cache = KVCache.for_model(model, 1, n_shared)
            model(torch.tensor([full[0][:n_shared]], device=device), cache=prefix_cache)
        for start in range(0, len(seqs), batch_size):
            chunk = seqs[start : start + batch_size]
            idx = right_pad(chunk, device=device)  # (B, T)
            options = {}
            if n_shared:
                options["cache"] = KVCache.for_model(model, len(chunk), n_shared + idx.size(1))
                options["cache"].load_prefix(prefix_cache)  # (1, nkv, P, hs) into every row
            if at_some:  # the output layer only where a word is scored
                at = torch.zeros(idx.shape, dtype=torch.bool)
                for b, seq in enumerate(chunk):
                    for _, _, first, w in runs[seq]:
                        at[b, first : first + len(w)] = True
                row = at.flatten().cumsum(0).view(idx.shape) - 1  # (B, T): its row of logits
                options["logits_at"] = at.to(device)
            output = model(idx, **options)
            logits = getattr(output, "logits", output)  # (B, T, V), or (N, V) with logits_at
            for b, seq in enumerate(chunk):
                for i, k, first, w in runs[seq]:
                    span = slice(first, first + len(w))
                    rows = logits[row[b, span]] if at_some else logits[b, span]  # (len(w), V)
                    logp = rows.float().log_softmax(-1)
                    out[i, k] = logp[torch.arange(len(w)), w].sum().cpu()
    return out


def classify(model, tokenizer, prompts, label_words, *, prefix: str = "",
             batch_size: int = 16) -> torch.Tensor:  # fmt: skip
    """Index of the most likely label word after each prompt, shape (N,)."""
    scores = label_word_logprobs(model, tokenizer, prompts, label_words, prefix=prefix,
                                 batch_size=batch_size)  # fmt: skip
    return scores.argmax(-1)
