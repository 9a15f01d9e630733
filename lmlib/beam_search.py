"""Beam search: keep the ``num_beams`` most likely continuations instead of one (Chapter 5).

Greedy decoding commits to one token per step; beam search keeps the ``num_beams`` partial
continuations with the highest total log-probability and extends each by every token, which
can find a sequence whose first token was not the single best one. One beam is greedy
decoding. The rules are Hugging Face's, and the tests compare the two token for token.

Shape legend: B batch, T time (prompt length), V vocabulary size, nb beams per prompt.

>>> from lmlib.model import GPT, GPTConfig
>>> _ = torch.manual_seed(0)
>>> model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layers=1, n_heads=2, d_model=8))
>>> config = GenerationConfig(max_new_tokens=4, num_beams=3)
>>> beam_search(model.eval(), torch.tensor([[1, 2, 3]]), config).shape  # 3 + 4 tokens
torch.Size([1, 7])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmlib.generate import GenerationConfig, check_prompt, resolve, token_id_list
from lmlib.kvcache import KVCache


def _add_hypothesis(finished: list, score: float, tokens: torch.Tensor, num_beams: int):
    """Keep the num_beams best (score, tokens) pairs, best first."""
    finished.append((score, tokens))
    finished.sort(key=lambda h: h[0], reverse=True)
    del finished[num_beams:]


@torch.inference_mode()
def beam_search(model, idx: torch.Tensor, config: GenerationConfig | None = None, *,
                attention_mask: torch.Tensor | None = None,
                **options) -> torch.Tensor:  # fmt: skip
    """The most likely continuation found with ``num_beams`` hypotheses per prompt, (B, T + new).

    ``config`` is a `lmlib.generate.GenerationConfig` (keyword ``options`` override its
    fields); beam search reads ``max_new_tokens``, ``num_beams``, ``length_penalty``, the
    eos and pad ids and ``use_cache``. The rules are Hugging Face's
    ``generate(num_beams=..., do_sample=False)`` with its defaults (``early_stopping=False``):

    - each step ranks the nb * V extensions of a prompt's beams and looks at the best
      ``(1 + max(1, #eos)) * nb``, so that nb beams survive even if the best ones end;
    - an extension ending in eos (or reaching ``max_new_tokens``) that ranks among the
      first nb is a finished hypothesis, scored sum(log p) / new_length ** length_penalty;
      the nb best finished ones are kept;
    - a prompt is done once it has nb finished hypotheses and its best running beam,
      scored at its current length, does not beat the worst of them.

    Returns the best finished hypothesis per prompt; shorter rows are filled with
    ``pad_token_id`` (default: the first eos). The config's sampling, processors, stop
    sequences and sliding window do not apply to beams, and setting them is an error.
    """
    cfg = resolve(config, **options)
    unused = {"do_sample": cfg.do_sample, "repetition_penalty": cfg.repetition_penalty,
              "logits_processors": cfg.logits_processors, "stop": cfg.stop,
              "stop_strings": cfg.stop_strings, "sliding_window": cfg.sliding_window}  # fmt: skip
    if any(value for value in unused.values()):
        names = ", ".join(name for name, value in unused.items() if value)
        raise ValueError(f"beam_search does not support {names}")
    check_prompt(model, idx, cfg, attention_mask)
    if cfg.max_new_tokens == 0:
        return idx.clone()
    B, T = idx.shape
    nb, V, n = cfg.num_beams, model.config.vocab_size, cfg.max_new_tokens
    eos = torch.tensor(token_id_list(cfg.eos_token_id), dtype=torch.long, device=idx.device)
    n_candidates = (1 + max(1, len(eos))) * nb
    # Every prompt starts as nb copies; only the first is live (score 0, the others -1e9),
    # or the first step would pick the same best token nb times.
    seqs = idx.long().repeat_interleave(nb, dim=0)  # (B*nb, T)
    mask = None if attention_mask is None else attention_mask.long().repeat_interleave(nb, 0)
    scores = torch.full((B, nb), -1e9, device=idx.device)  # (B, nb) sum of log-probs
    scores[:, 0] = 0.0
    finished = [[] for _ in range(B)]  # per prompt: up to nb (score, tokens), best first
    done = [False] * B
    cache = KVCache.for_model(model, B * nb, T + n) if cfg.use_cache else None
    unseen = seqs
    for step in range(n):
        new_length = step + 1  # generated tokens, counting the one chosen now
        inputs = unseen if cfg.use_cache else seqs
        out = model(inputs, cache=cache, attention_mask=mask, last_only=True)
        logits = out.logits[:, -1].float()  # (B*nb, V)
        logprobs = F.log_softmax(logits, dim=-1) + scores.view(-1, 1)  # (B*nb, V) totals
        top, flat = logprobs.view(B, nb * V).topk(n_candidates, dim=-1)  # (B, K) per prompt
        beam, token = flat // V, flat % V  # (B, K): the beam each extends, and with what
        ends = torch.isin(token, eos) | (new_length == n)  # (B, K)
        for b, row_ends in enumerate(ends.tolist()):
            for rank in range(nb):  # only the first nb candidates may finish
                if row_ends[rank] and not done[b]:
                    tokens = torch.cat([seqs[b * nb + beam[b, rank], T:], token[b, rank, None]])
                    score = top[b, rank].item() / new_length**cfg.length_penalty
                    _add_hypothesis(finished[b], score, tokens, nb)
        # The nb best candidates that did not end go on (-1e9 pushes ended ones last).
        scores, pick = (top - 1e9 * ends.float()).topk(nb, dim=-1)  # (B, nb)
        source = beam.gather(1, pick) + nb * torch.arange(B, device=idx.device)[:, None]
        source = source.view(-1)  # (B*nb,) row of seqs that each new beam extends
        seqs = torch.cat([seqs[source], token.gather(1, pick).view(-1, 1)], dim=1)
        unseen = seqs[:, -1:]  # (B*nb, 1)
        if cache is not None:
            cache.reorder(source)  # each beam's keys and values follow it
        if mask is not None:
            mask = torch.cat([mask[source], mask.new_ones(B * nb, 1)], dim=1)
        for b in range(B):
            best_running = scores[b, 0].item() / new_length**cfg.length_penalty
            full = len(finished[b]) == nb
            done[b] = done[b] or (full and best_running <= finished[b][-1][0])
        if all(done):
            break
    best = [hyps[0][1] for hyps in finished]
    fill = cfg.pad_token_id if cfg.pad_token_id is not None else (int(eos[0]) if len(eos) else 0)
    new = torch.full((B, max(len(t) for t in best)), fill, dtype=torch.long, device=idx.device)
    for b, tokens in enumerate(best):
        new[b, : len(tokens)] = tokens
    return torch.cat([idx, new], dim=1)  # (B, T + new)
