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

Every token kept is the model's own greedy choice, so the text is greedy decoding's, token
for token (up to the order of floating-point sums: the model reads k + 1 positions at once
instead of one, which may round its last bits differently). The draft only decides how many
tokens each pass of the model yields. Sampling needs another acceptance rule (a guess is
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


@dataclass
class SpeculativeOutput:
    """What `speculative_generate` made, and how much the draft helped."""

    tokens: torch.Tensor  # (1, T + new): the prompt and the new tokens
    prompt_length: int  # T
    model_calls: int  # passes of the model, the prompt's included
    drafted: int  # guesses the draft made
    accepted: int  # guesses the model kept

    @property
    def acceptance_rate(self) -> float:
        """Share of the draft's guesses that the model kept (1.0 when none were made)."""
        return self.accepted / self.drafted if self.drafted else 1.0

    @property
    def tokens_per_call(self) -> float:
        """New tokens per pass of the model; plain greedy decoding makes 1."""
        new = self.tokens.size(1) - self.prompt_length
        return new / self.model_calls if self.model_calls else 0.0


@torch.inference_mode()
def speculative_generate(model: nn.Module, draft: nn.Module, idx: torch.Tensor,
                         max_new_tokens: int, draft_tokens: int = 6,
                         eos_token_id=None) -> SpeculativeOutput:  # fmt: skip
    """Greedy decoding of ``model`` from idx (1, T), with ``draft`` guessing ahead.

    - ``draft_tokens`` (k) guesses per round. More pays when the draft agrees often: each
      guess costs a draft step, and a round ends at the first wrong guess.
    - ``eos_token_id`` (an id or a list): generation stops after the first one, which is
      kept. None: exactly ``max_new_tokens`` tokens.
    - ``draft`` must share the model's vocabulary; any such model works (`low_bit_draft`
      makes a fast one). The text does not depend on it, only the speed does.

    Batch 1 only: rows of a batch would keep different numbers of guesses. Both caches hold
    the whole text, so prompt + new tokens + k must fit in both models' ``block_size``.
    """
    for name, m in (("model", model), ("draft", draft)):
        if not isinstance(m, nn.Module) or not hasattr(getattr(m, "config", None), "vocab_size"):
            raise TypeError(f"{name} must be lmlib's GPT or Llama, got {type(m).__name__}")
    if draft.config.vocab_size != model.config.vocab_size:
        raise ValueError(f"draft and model must share a vocabulary: {draft.config.vocab_size} "
                         f"tokens against {model.config.vocab_size}")  # fmt: skip
    check_int(max_new_tokens, "max_new_tokens", low=0)
    k = check_int(draft_tokens, "draft_tokens", low=1)
    for m in (model, draft):  # token ids in range, the text within block_size
        check_prompt(m, idx, GenerationConfig(max_new_tokens=max_new_tokens))
    if idx.size(0) != 1:
        raise ValueError(f"speculative_generate takes one prompt (1, T), got {idx.size(0)} "
                         f"rows: call it once per prompt")  # fmt: skip
    T = idx.size(1)
    reach = min(model.config.block_size, draft.config.block_size)
    if T + max_new_tokens + k > reach:  # a round may read k guesses past the last token
        raise ValueError(f"prompt length {T} + max_new_tokens {max_new_tokens} + "
                         f"draft_tokens {k} exceeds the block_size {reach}: ask for fewer "
                         f"tokens or guesses")  # fmt: skip
    eos = set(token_id_list(eos_token_id))
    if max_new_tokens == 0:
        return SpeculativeOutput(idx.clone(), T, 0, 0, 0)
    size = T + max_new_tokens + k
    cache, draft_cache = KVCache.for_model(model, 1, size), KVCache.for_model(draft, 1, size)

    def ids(tokens):
        return torch.tensor([tokens], device=idx.device)  # (1, len)

    new = [int(model(idx, cache=cache, last_only=True).logits[0, -1].argmax())]
    draft(idx, cache=draft_cache, last_only=True)  # the draft reads the prompt too
    unread = new[-1:]  # tokens the draft's cache has not read yet
    calls, drafted, accepted = 1, 0, 0
    while len(new) < max_new_tokens and new[-1] not in eos:
        n = min(k, max_new_tokens - len(new))  # no guesses past the end
        # 1. the draft guesses n tokens, one step each
        guesses, x = [], ids(unread)
        for _ in range(n):
            guesses.append(int(draft(x, cache=draft_cache, last_only=True).logits[0, -1].argmax()))
            x = ids(guesses[-1:])
        # 2. the model's own choice after the last accepted token and after each guess
        start = cache.length
        choice = model(ids(new[-1:] + guesses), cache=cache).logits[0].argmax(-1)  # (n + 1,)
        choice = choice.tolist()
        # 3. keep guesses while the model agrees, then take the model's token
        kept = 0
        while kept < n and guesses[kept] == choice[kept]:
            kept += 1
        new += guesses[:kept] + [choice[kept]]
        calls, drafted, accepted = calls + 1, drafted + n, accepted + kept
        # 4. forget the rejected guesses: both caches end after the last kept guess
        cache.crop(start + 1 + kept)
        if kept < n:
            draft_cache.crop(start + 1 + kept)
            unread = [choice[kept]]
        else:  # the draft never read its own last guess
            unread = [guesses[-1], choice[kept]]
    for i, token in enumerate(new):  # stop after the first end-of-sequence token
        if token in eos:
            new = new[: i + 1]
            break
    tokens = torch.cat([idx, ids(new[:max_new_tokens])], dim=1)  # (1, T + new)
    return SpeculativeOutput(tokens, T, calls, drafted, accepted)
