"""Speculative decoding: a cheap draft guesses a few tokens, the model checks them in one pass.

At batch 1 a decoding step with the KV cache reads every weight of the model to produce one
token: SmolLM2's 513 MiB of float32 weights, per token. The arithmetic is small; reading is
the cost. So running the model on k + 1 tokens at once costs about as much as on one. If
someone could guess the next k tokens, one pass would check all k guesses (Leviathan et al.
2023, "Fast inference from transformers via speculative decoding"; Chen et al. 2023).

The guesser, the draft, is a copy of the model itself with low-bit weights (`low_bit_draft`):
4-bit groups in the blocks and 8-bit rows in the output layer, computed in bfloat16. It reads
about a sixth of the bytes, so it runs several times faster, and it agrees with the model on
most tokens because it holds nearly the same weights. One round of `speculative_generate`:

1. the draft guesses k tokens, one step at a time, with its own KV cache;
2. the model reads the last accepted token and the k guesses in one pass (k + 1 positions)
   and gives its own greedy choice after each;
3. the guesses are kept up to the first one the model would not have chosen; there the
   model's own choice is taken instead (if every guess held, the model's choice after the
   last guess comes for free);
4. both caches forget the positions of the rejected guesses (`KVCache.crop`).

The cheapest guesser needs no model: the text itself (`prompt_lookup`; Saxena 2023, "Prompt
lookup decoding"; Yang et al. 2023 copy from reference documents the same way). If the last
few tokens appeared earlier, guess that what followed them then follows them again. It costs
nothing to make, and it is right where text repeats: a summary or an answer quotes its
source, edited code copies the original, and greedy decoding of a small model falls into
loops. Elsewhere it finds no match, and the draft model (if any) guesses instead.

Every token kept is the model's own greedy choice, so the text is greedy decoding's, token
for token (up to the order of floating-point sums: the model reads k + 1 positions at once
instead of one, which may round its last bits differently). The draft only decides how many
tokens each pass of the model yields. A wrong guess is not free, though: the pass reads one
more position for it (for SmolLM2 on 2 CPU cores, about 2 ms on top of a 71 ms step, as
measured in `lmlib.kvcache`). Sampling needs another acceptance rule (a guess is
kept with probability min(1, p_model / p_draft)); this module does greedy decoding only.

Shape legend: T prompt length, k guesses per round, V vocabulary.

>>> from lmlib.generate import generate
>>> from lmlib.model import GPT, GPTConfig
>>> _ = torch.manual_seed(0)
>>> model = GPT(GPTConfig(block_size=32, vocab_size=11, n_layers=1, n_heads=2, d_model=8))
>>> model.eval()  # doctest: +ELLIPSIS
GPT(...)
>>> out = speculative_generate(model, model, torch.tensor([[1, 2]]), max_new_tokens=6)
>>> out.tokens.tolist() == generate(model, torch.tensor([[1, 2]]), max_new_tokens=6).tolist()
True
>>> out.acceptance_rate  # a draft identical to the model: every guess is kept
1.0
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from lmlib.finetune import name_ends_with, replace_modules
from lmlib.generate import GenerationConfig, check_prompt, token_id_list
from lmlib.kvcache import KVCache
from lmlib.quantization import PackedLinear
from lmlib.runtime import check_int


def low_bit_draft(model: nn.Module, bits: int = 4, group_size: int = 32,
                  head_bits: int = 8) -> nn.Module:  # fmt: skip
    """A copy of ``model`` whose linear layers compute from low-bit weights (`PackedLinear`).

    Every ``nn.Linear`` of the blocks gets ``bits``-bit weights in groups of ``group_size``;
    the output layer ``lm_head`` gets ``head_bits`` (8: one scale per row). The output layer
    decides which token wins, and it is the one matrix SmolLM2's file does not store in
    4 bits (it is the token embedding, stored in 8 bits). On the greedy text of
    ``benchmarks/generate.py``, each token read with the text before it, the draft chose
    SmolLM2's token at 88% of the first 128 with a 4-bit output layer, and at 97% of them
    (98% of all 256) with an 8-bit one. Embeddings and norms stay as they are.
    ``model`` itself is not changed.
    """
    if not isinstance(model, nn.Module) or not hasattr(model, "config"):
        raise TypeError(f"model must be lmlib's GPT or Llama, got {type(model).__name__}")
    draft = copy.deepcopy(model).eval()

    def is_head(name, module):
        return isinstance(module, nn.Linear) and name_ends_with(name, ("lm_head",))

    def is_linear(name, module):
        return isinstance(module, nn.Linear)

    replace_modules(draft, is_head, lambda linear: PackedLinear(linear, head_bits, group_size))
    replace_modules(draft, is_linear, lambda linear: PackedLinear(linear, bits, group_size))
    return draft


def prompt_lookup(tokens: list[int], n: int, max_ngram: int = 3,
                  min_ngram: int = 2) -> list[int]:  # fmt: skip
    """Up to ``n`` guesses copied from the text itself, with no model at all.

    The last m tokens (m from ``max_ngram`` down to ``min_ngram``) are looked for earlier in
    ``tokens``; at their latest earlier place, the tokens that followed them there are the
    guesses. If those run out at the end of the text, the copying goes on from the guesses
    (so "a b a b" guesses "a b a b ..."). No match of any length: no guesses (``[]``).

    >>> prompt_lookup([5, 6, 7, 8, 9, 5, 6], n=3)  # "5 6" was followed by 7 8 9
    [7, 8, 9]
    >>> prompt_lookup([0, 1, 0, 1], n=5)  # "0 1" was followed by 0 1, which repeat
    [0, 1, 0, 1, 0]
    >>> prompt_lookup([1, 2, 3, 4], n=3)  # "3 4" never came before
    []
    """
    check_int(n, "n", low=0)
    check_int(min_ngram, "min_ngram", low=1)
    check_int(max_ngram, "max_ngram", low=min_ngram)
    for m in range(min(max_ngram, len(tokens) - 1), min_ngram - 1, -1):
        key, last = tokens[-m:], tokens[-1]
        for j in range(len(tokens) - m - 1, -1, -1):  # latest first
            if tokens[j + m - 1] == last and tokens[j : j + m] == key:
                # copy from j + m on; a copy that reaches the end of the text goes on into
                # the guesses themselves, so a loop of p tokens yields n guesses, not p
                text = tokens[j + m :]
                while len(text) < n:
                    text += text[: n - len(text)]
                return text[:n]
    return []


@dataclass
class SpeculativeOutput:
    """What `speculative_generate` made, and how much the guessing helped."""

    tokens: torch.Tensor  # (1, T + new): the prompt and the new tokens
    prompt_length: int  # T
    model_calls: int  # passes of the model, the prompt's included
    drafted: int  # guesses made, by the draft model or by prompt lookup
    accepted: int  # guesses the model kept
    looked_up: int = 0  # of the guesses, those copied by prompt lookup
    looked_up_kept: int = 0  # of those, the ones the model kept

    @property
    def acceptance_rate(self) -> float:
        """Share of the guesses that the model kept (1.0 when none were made)."""
        return self.accepted / self.drafted if self.drafted else 1.0

    @property
    def tokens_per_call(self) -> float:
        """New tokens per pass of the model; plain greedy decoding makes 1."""
        new = self.tokens.size(1) - self.prompt_length
        return new / self.model_calls if self.model_calls else 0.0


def _check_decoder(m, name: str) -> None:
    if not isinstance(m, nn.Module) or not hasattr(getattr(m, "config", None), "vocab_size"):
        raise TypeError(f"{name} must be lmlib's GPT or Llama, got {type(m).__name__}")


@torch.inference_mode()
def speculative_generate(model: nn.Module, draft: nn.Module | None, idx: torch.Tensor,
                         max_new_tokens: int, draft_tokens: int = 6, eos_token_id=None,
                         lookup_ngram: int = 0) -> SpeculativeOutput:  # fmt: skip
    """Greedy decoding of ``model`` from idx (1, T), with guesses checked ahead.

    - ``draft_tokens`` (k) guesses per round. More pays when the guesses are often right:
      each guess costs a draft step, and a round ends at the first wrong guess.
    - ``draft``: a model that shares the model's vocabulary; any such model works
      (`low_bit_draft` makes a fast one). The text does not depend on it, only the speed
      does. None: no draft model.
    - ``lookup_ngram`` (0: off): each round first tries `prompt_lookup` with n-grams of up to
      this many tokens (down to 2), and asks the draft only when the text has no match.
      A copied guess costs nothing to make, so text that repeats itself (greedy decoding
      of a small model often loops; a summary quotes its source) gets long rounds for free.
    - ``eos_token_id`` (an id or a list): generation stops after the first one, which is
      kept. None: exactly ``max_new_tokens`` tokens.

    Batch 1 only: rows of a batch would keep different numbers of guesses. Both caches hold
    the whole text, so prompt + new tokens + k must fit in both models' ``block_size``.
    """
    _check_decoder(model, "model")
    if draft is not None:
        _check_decoder(draft, "draft")
        if draft.config.vocab_size != model.config.vocab_size:
            raise ValueError(f"draft and model must share a vocabulary: "
                             f"{draft.config.vocab_size} tokens against "
                             f"{model.config.vocab_size}")  # fmt: skip
    check_int(max_new_tokens, "max_new_tokens", low=0)
    k = check_int(draft_tokens, "draft_tokens", low=1)
    lookup = check_int(lookup_ngram, "lookup_ngram", low=0)
    if lookup == 1:
        raise ValueError("lookup_ngram must be 0 (off) or at least 2, got 1: a single token "
                         "recurs too often for what followed it to be a good guess")  # fmt: skip
    if draft is None and not lookup:
        raise ValueError("nothing makes guesses: pass a draft model, lookup_ngram >= 2 "
                         "(prompt lookup), or both; got neither")  # fmt: skip
    models = (model,) if draft is None else (model, draft)
    for m in models:  # token ids in range, the text within block_size
        check_prompt(m, idx, GenerationConfig(max_new_tokens=max_new_tokens))
    if idx.size(0) != 1:
        raise ValueError(f"speculative_generate takes one prompt (1, T), got {idx.size(0)} "
                         f"rows: call it once per prompt")  # fmt: skip
    T = idx.size(1)
    reach = min(m.config.block_size for m in models)
    if T + max_new_tokens + k > reach:  # a round may read k guesses past the last token
        raise ValueError(f"prompt length {T} + max_new_tokens {max_new_tokens} + "
                         f"draft_tokens {k} exceeds the block_size {reach}: ask for fewer "
                         f"tokens or guesses")  # fmt: skip
    eos = set(token_id_list(eos_token_id))
    if max_new_tokens == 0:
        return SpeculativeOutput(idx.clone(), T, 0, 0, 0)
    size = T + max_new_tokens + k
    cache = KVCache.for_model(model, 1, size)
    # The draft's cache holds the first draft_cache.length tokens of the text; it reads the
    # rest when it is next asked to guess (after copied guesses, that may be many).
    draft_cache = None if draft is None else KVCache.for_model(draft, 1, size)

    def ids(tokens):
        return torch.tensor([tokens], device=idx.device)  # (1, len)

    def draft_guesses(n):
        guesses, x = [], ids(text[draft_cache.length :])  # what the draft has not read
        for _ in range(n):
            guesses.append(int(draft(x, cache=draft_cache, last_only=True).logits[0, -1].argmax()))
            x = ids(guesses[-1:])
        return guesses

    text = idx[0].tolist()  # the prompt, then every token kept
    text.append(int(model(idx, cache=cache, last_only=True).logits[0, -1].argmax()))
    calls, drafted, accepted, looked_up, looked_up_kept = 1, 0, 0, 0, 0
    finished = text[-1] in eos
    while len(text) - T < max_new_tokens and not finished:
        n = min(k, max_new_tokens - (len(text) - T))  # no guesses past the end
        # 1. guesses: copied from the text if it repeats, else the draft's, one step each
        guesses = prompt_lookup(text, n, lookup) if lookup else []
        copied = len(guesses)
        if not guesses and draft is not None:
            guesses = draft_guesses(n)
        # 2. the model's own choice after the last token and after each guess
        start = cache.length  # = len(text) - 1: the last token is not read yet
        choice = model(ids(text[-1:] + guesses), cache=cache).logits[0].argmax(-1).tolist()
        # 3. keep guesses while the model agrees, then take the model's token
        kept = 0
        while kept < len(guesses) and guesses[kept] == choice[kept]:
            kept += 1
        added = guesses[:kept] + [choice[kept]]
        text += added
        finished = not eos.isdisjoint(added)  # a kept guess may be the end, too
        calls, drafted, accepted = calls + 1, drafted + len(guesses), accepted + kept
        looked_up, looked_up_kept = looked_up + copied, looked_up_kept + (kept if copied else 0)
        # 4. forget the rejected guesses: no cache may hold more than the kept text's
        # tokens before the newest (the newest is read with the next round's guesses)
        cache.crop(start + 1 + kept)
        if draft_cache is not None and draft_cache.length > start + 1 + kept:
            draft_cache.crop(start + 1 + kept)
    new = text[T:]
    for i, token in enumerate(new):  # stop after the first end-of-sequence token
        if token in eos:
            new = new[: i + 1]
            break
    tokens = torch.cat([idx, ids(new[:max_new_tokens])], dim=1)  # (1, T + new)
    return SpeculativeOutput(tokens, T, calls, drafted, accepted, looked_up, looked_up_kept)
