"""Generating text with `lmlib.model`'s GPT and Llama: decoding rules, a KV cache, beam search.

Read top to bottom, each piece adds one idea:

- Logits processors, pure functions (B, V) -> (B, V) with Hugging Face's semantics:
  `apply_temperature`, `top_k_filter`, `top_p_filter`, `min_p_filter` and
  `apply_repetition_penalty`; `sample` chains them and draws one token per row.
- `left_pad`: prompts of different lengths as one batch, padded on the left so that every
  row's next token goes in the same column.
- `stream`: the decoding loop. The prompt goes through the model once and fills a `KVCache`;
  after that each step feeds only the newest token. `generate` collects what `stream`
  yields, `generate_text` works on strings through a tokenizer.
- `beam_search`: keep the ``num_beams`` most likely continuations instead of one.
- `time_generation`: seconds to generate n tokens, with or without the cache.

Shape legend: B batch, T time (prompt length), V vocabulary size, nb beams per prompt.

>>> from lmlib.model import GPT, GPTConfig
>>> _ = torch.manual_seed(0)
>>> model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=2, d_model=8)).eval()
>>> generate(model, torch.tensor([[1, 2, 3]]), max_new_tokens=4).shape  # greedy: 3 + 4 tokens
torch.Size([1, 7])
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from lmlib.model import KVCache

# --------------------------------------------------------------------------------------------
# Logits processors


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature: below 1 sharpens the distribution, above 1 flattens it.

    softmax([2, 0]) = [0.88, 0.12]; at temperature 2 it is softmax([1, 0]) = [0.73, 0.27].

    >>> apply_temperature(torch.tensor([[2.0, 0.0]]), 2.0)
    tensor([[1., 0.]])
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (greedy: do_sample=False)")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties with the k-th all stay); the rest -> -inf.

    >>> top_k_filter(torch.tensor([[1.0, 3.0, 2.0, 0.0]]), k=2)
    tensor([[-inf, 3., 2., -inf]])
    """
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"top_k must be a positive int, got {k!r}")
    kth = logits.topk(min(k, logits.size(-1)), dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling: keep the smallest set of most likely tokens whose probability sums
    to at least p (always at least one token); the rest -> -inf.

    With probabilities [0.5, 0.3, 0.2] and p = 0.7, the top two (0.5 + 0.3 = 0.8 >= 0.7)
    stay. Like Hugging Face, it drops from the unlikely end every token whose cumulative
    probability, counted from the least likely up, is <= 1 - p.

    >>> top_p_filter(torch.tensor([0.5, 0.3, 0.2]).log()[None], p=0.7).exp()
    tensor([[0.5000, 0.3000, 0.0000]])
    """
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = logits.sort(dim=-1)  # ascending: least likely first
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    remove = cumulative <= 1 - p
    remove[..., -1] = False  # the most likely token always stays
    remove = remove.scatter(-1, order, remove)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least min_p times the top token's; the rest -> -inf.

    The cut follows the model's confidence: with probabilities [0.6, 0.3, 0.1] and
    min_p = 0.25 the bar is 0.15, so 0.1 goes.

    >>> min_p_filter(torch.tensor([0.6, 0.3, 0.1]).log()[None], min_p=0.25).exp()
    tensor([[0.6000, 0.3000, 0.0000]])
    """
    if not 0 <= min_p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {min_p}")
    probs = logits.softmax(dim=-1)  # (B, V)
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
    remove = remove.scatter(-1, probs.argmax(dim=-1, keepdim=True), False)  # keep one
    return logits.masked_fill(remove, float("-inf"))


def apply_repetition_penalty(logits, idx, penalty: float, attention_mask=None):
    """Make every token that occurs in idx (B, T) less likely: the CTRL rule, as in Hugging Face.

    A positive logit is divided by the penalty and a negative one multiplied, so both move
    down. Positions where ``attention_mask`` is 0 (padding) do not count.

    >>> logits = torch.tensor([[2.0, -2.0, 2.0]])
    >>> apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), penalty=2.0)  # 2 unseen
    tensor([[ 1., -4.,  2.]])
    """
    if not penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
    weight = torch.ones_like(idx) if attention_mask is None else attention_mask.long()
    counts = torch.zeros(logits.shape, dtype=torch.long, device=logits.device)
    seen = counts.scatter_add(-1, idx, weight) > 0  # (B, V): token occurs in a real position
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def sample(logits, temperature=1.0, top_k=None, top_p=None, min_p=None, generator=None):
    """One token per row, (B, V) -> (B,): temperature, then the filters, then a random draw.

    The order is Hugging Face's: temperature, top-k, top-p, min-p. A filter left at None is
    off. With one token left there is nothing to draw:

    >>> sample(torch.tensor([[0.0, 5.0, 1.0]]), top_k=1)
    tensor([1])
    """
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    if min_p is not None:
        logits = min_p_filter(logits, min_p)
    probs = logits.softmax(dim=-1)  # (B, V), zero where filtered
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)


# --------------------------------------------------------------------------------------------
# The decoding loop


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists of different lengths -> idx (B, T) and attention_mask (B, T), 0 = padding.

    Padding goes on the left, so that every row's last real token is in the last column and
    the next token of every row is appended in the same place.

    >>> left_pad([[5, 6, 7], [8]], pad_id=0)
    (tensor([[5, 6, 7],
            [0, 0, 8]]), tensor([[1, 1, 1],
            [0, 0, 1]]))
    """
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("every prompt needs at least one token")
    T = max(len(r) for r in rows)
    idx = torch.tensor([[pad_id] * (T - len(r)) + list(r) for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    return idx, mask


def _as_list(token_ids) -> list[int]:
    """None, one id or several ids -> a list (eos may be several tokens, as in Llama 3)."""
    if token_ids is None:
        return []
    return [int(token_ids)] if isinstance(token_ids, int) else [int(t) for t in token_ids]


def _check_prompt(model, idx, max_new_tokens: int, attention_mask=None) -> None:
    """Clear errors for the mistakes the model itself would report less clearly."""
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.size(1) == 0:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"idx must be a non-empty (B, T) tensor of token ids, got {shape}")
    if not (isinstance(max_new_tokens, int) and max_new_tokens >= 0):
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    T, block_size = idx.size(1), model.config.block_size
    if T + max_new_tokens > block_size:
        raise ValueError(f"prompt length {T} + max_new_tokens {max_new_tokens} exceeds the "
                         f"model's block_size {block_size}")  # fmt: skip
    if attention_mask is not None:
        if attention_mask.shape != idx.shape:
            raise ValueError(f"attention_mask must have idx's shape {tuple(idx.shape)}, "
                             f"got {tuple(attention_mask.shape)}")  # fmt: skip
        if not attention_mask[:, -1].all():
            raise ValueError("pad prompts on the left (see left_pad): the last column of "
                             "attention_mask must be all ones")  # fmt: skip


def _ends_with(seq: torch.Tensor, stop: list[list[int]]) -> torch.Tensor:
    """(B,) bool: whether each row of seq (B, T) ends with one of the stop sequences."""
    done = torch.zeros(seq.size(0), dtype=torch.bool, device=seq.device)
    for s in stop:
        if 0 < len(s) <= seq.size(1):
            tail = torch.tensor(s, device=seq.device)
            done |= (seq[:, -len(s) :] == tail).all(dim=-1)
    return done


@torch.inference_mode()
def stream(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    do_sample: bool = False,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    stop: list[list[int]] | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, a (B,) tensor, one step at a time.

    The arguments are `generate`'s. A row is finished once it produces an eos token or ends
    with a ``stop`` sequence; from then on it gets ``pad_token_id`` (default: the first eos).
    The loop ends after ``max_new_tokens`` steps or when every row is finished.

    >>> from lmlib.model import GPT, GPTConfig
    >>> model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=1, n_head=2, d_model=8))
    >>> [tuple(token.shape) for token in stream(model.eval(), torch.tensor([[1, 2]]), 3)]
    [(1,), (1,), (1,)]
    """
    _check_prompt(model, idx, max_new_tokens, attention_mask)
    B, T = idx.shape
    eos, stop = _as_list(eos_token_id), [list(s) for s in stop or []]
    pad_token_id = eos[0] if pad_token_id is None and eos else pad_token_id
    if stop and pad_token_id is None:
        raise ValueError("stop sequences need a pad_token_id for the rows that finish first")
    eos = torch.tensor(eos, dtype=torch.long, device=idx.device)
    mask = None if attention_mask is None else attention_mask.long()
    # The cache holds the prompt and every new token: T + max_new_tokens positions.
    cache = KVCache.for_model(model, B, T + max_new_tokens) if use_cache else None
    seq = idx.long()  # (B, T + tokens so far)
    unseen = seq  # what the model has not read yet: the prompt, then one token at a time
    finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        if use_cache:
            out = model(unseen, cache=cache, attention_mask=mask, last_only=True)
        else:  # recompute every position, every step: the cost the cache saves
            out = model(seq, attention_mask=mask, last_only=True)
        logits = out.logits[:, -1].float()  # (B, V): scores for the next token only
        if repetition_penalty is not None:
            logits = apply_repetition_penalty(logits, seq, repetition_penalty, mask)
        if do_sample:
            token = sample(logits, temperature, top_k, top_p, min_p, generator)  # (B,)
        else:
            token = logits.argmax(dim=-1)  # (B,) greedy: the most likely token
        if pad_token_id is not None:
            token = token.masked_fill(finished, pad_token_id)
        seq = torch.cat([seq, token[:, None]], dim=1)  # (B, T + 1)
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
        unseen = token[:, None]  # (B, 1)
        yield token
        finished |= torch.isin(token, eos) | _ends_with(seq, stop)
        if finished.all():
            return


def generate(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    do_sample: bool = False,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    stop: list[list[int]] | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    streamer: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Continue each prompt in idx (B, T); returns (B, T + new), new <= max_new_tokens.

    - ``do_sample=False`` is greedy decoding (temperature and the filters are then unused);
      with ``do_sample=True`` each token is drawn by `sample`, reproducibly for a given
      ``generator`` seed.
    - ``repetition_penalty`` (> 1 discourages repeats) applies in both modes.
    - Prompts of different lengths: pad them on the left (`left_pad`) and pass
      ``attention_mask``; each row then continues exactly as its prompt would alone.
    - ``eos_token_id`` and ``stop`` (token-id sequences) finish a row; finished rows are
      filled with ``pad_token_id``, and generation ends when all rows are finished.
    - ``use_cache=False`` re-reads the whole sequence at every step: the same tokens, slower.
    - ``streamer`` is called with each new token (B,) as soon as it is chosen.
    - The model should be in eval mode, or dropout makes every step random.
    """
    tokens = []
    for token in stream(
        model, idx, max_new_tokens, temperature=temperature, do_sample=do_sample, top_k=top_k,
        top_p=top_p, min_p=min_p, repetition_penalty=repetition_penalty,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id, attention_mask=attention_mask,
        stop=stop, use_cache=use_cache, generator=generator,
    ):  # fmt: skip
        if streamer is not None:
            streamer(token)
        tokens.append(token)
    if not tokens:
        return idx.clone()
    return torch.cat([idx, torch.stack(tokens, dim=1)], dim=1)  # (B, T + new)


def generate_text(model, tokenizer, prompts: list[str], max_new_tokens: int = 50, *,
                  stop: list[str] | None = None, **options) -> list[str]:  # fmt: skip
    """Continue each prompt string; returns only the new text, cut before any stop string.

    Prompts are tokenized, padded on the left and generated as one batch; ``options`` are
    `generate`'s (``do_sample``, ``top_p``, ...). ``eos_token_id`` and ``pad_token_id``
    default to the tokenizer's. Stop strings are checked on the decoded text, since a
    string can be split into tokens in more than one way.
    """
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    options.setdefault("eos_token_id", tokenizer.eos_token_id)
    options.setdefault("pad_token_id", pad)
    eos = set(_as_list(options["eos_token_id"]))
    idx, mask = left_pad(rows, pad)
    device = next(model.parameters()).device
    new = [[] for _ in prompts]  # each row's tokens, up to its eos or stop string
    done = [False] * len(prompts)
    for token in stream(model, idx.to(device), max_new_tokens, attention_mask=mask.to(device),
                        **options):  # fmt: skip
        for b, t in enumerate(token.tolist()):
            if done[b]:
                continue
            new[b].append(t)
            done[b] = t in eos or any(s in tokenizer.decode(new[b]) for s in stop or [])
        if all(done):
            break  # leaving the loop stops the generator: no further model calls
    texts = [tokenizer.decode(row, skip_special_tokens=True) for row in new]
    for s in stop or []:
        texts = [text.split(s)[0] for text in texts]
    return texts


# --------------------------------------------------------------------------------------------
# Beam search


def _add_hypothesis(finished: list, score: float, tokens: torch.Tensor, num_beams: int):
    """Keep the num_beams best (score, tokens) pairs, best first."""
    finished.append((score, tokens))
    finished.sort(key=lambda h: h[0], reverse=True)
    del finished[num_beams:]


@torch.inference_mode()
def beam_search(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    num_beams: int,
    *,
    length_penalty: float = 1.0,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """The most likely continuation found with ``num_beams`` hypotheses per prompt, (B, T + new).

    Greedy decoding commits to one token per step; beam search keeps the ``num_beams``
    partial continuations with the highest total log-probability and extends each by every
    token, which can find a sequence whose first token was not the single best one.

    The rules are Hugging Face's ``generate(num_beams=..., do_sample=False)`` with its
    defaults (``early_stopping=False``):

    - each step ranks the nb * V extensions of a prompt's beams and looks at the best
      ``(1 + max(1, #eos)) * nb``, so that nb beams survive even if the best ones end;
    - an extension ending in eos (or reaching ``max_new_tokens``) that ranks among the
      first nb is a finished hypothesis, scored sum(log p) / new_length ** length_penalty;
      the nb best finished ones are kept;
    - a prompt is done once it has nb finished hypotheses and its best running beam,
      scored at its current length, does not beat the worst of them.

    Returns the best finished hypothesis per prompt; shorter rows are filled with
    ``pad_token_id`` (default: the first eos).
    """
    _check_prompt(model, idx, max_new_tokens, attention_mask)
    if not (isinstance(num_beams, int) and num_beams >= 1):
        raise ValueError(f"num_beams must be a positive int, got {num_beams!r}")
    if max_new_tokens == 0:
        return idx.clone()
    B, T = idx.shape
    nb, V = num_beams, model.config.vocab_size
    eos = torch.tensor(_as_list(eos_token_id), dtype=torch.long, device=idx.device)
    n_candidates = (1 + max(1, len(eos))) * nb
    # Every prompt starts as nb copies; only the first is live (score 0, the others -1e9),
    # or the first step would pick the same best token nb times.
    seqs = idx.long().repeat_interleave(nb, dim=0)  # (B*nb, T)
    mask = None if attention_mask is None else attention_mask.long().repeat_interleave(nb, 0)
    scores = torch.full((B, nb), -1e9, device=idx.device)  # (B, nb) sum of log-probs
    scores[:, 0] = 0.0
    finished = [[] for _ in range(B)]  # per prompt: up to nb (score, tokens), best first
    done = [False] * B
    cache = KVCache.for_model(model, B * nb, T + max_new_tokens) if use_cache else None
    unseen = seqs
    for step in range(max_new_tokens):
        new_length = step + 1  # generated tokens, counting the one chosen now
        inputs = unseen if use_cache else seqs
        out = model(inputs, cache=cache, attention_mask=mask, last_only=True)
        logits = out.logits[:, -1].float()  # (B*nb, V)
        logprobs = F.log_softmax(logits, dim=-1) + scores.view(-1, 1)  # (B*nb, V) totals
        top, flat = logprobs.view(B, nb * V).topk(n_candidates, dim=-1)  # (B, K) per prompt
        beam, token = flat // V, flat % V  # (B, K): the beam each extends, and with what
        ends = torch.isin(token, eos) | (new_length == max_new_tokens)  # (B, K)
        for b, row_ends in enumerate(ends.tolist()):
            for rank in range(nb):  # only the first nb candidates may finish
                if row_ends[rank] and not done[b]:
                    tokens = torch.cat([seqs[b * nb + beam[b, rank], T:], token[b, rank, None]])
                    score = top[b, rank].item() / new_length**length_penalty
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
            best_running = scores[b, 0].item() / new_length**length_penalty
            full = len(finished[b]) == nb
            done[b] = done[b] or (full and best_running <= finished[b][-1][0])
        if all(done):
            break
    best = [hyps[0][1] for hyps in finished]
    fill = pad_token_id if pad_token_id is not None else (int(eos[0]) if len(eos) else 0)
    new = torch.full((B, max(len(t) for t in best)), fill, dtype=torch.long, device=idx.device)
    for b, tokens in enumerate(best):
        new[b, : len(tokens)] = tokens
    return torch.cat([idx, new], dim=1)  # (B, T + new)


# --------------------------------------------------------------------------------------------
# Timing


def time_generation(model, idx, lengths: list[int], use_cache: bool = True,
                    repeats: int = 1) -> list[float]:  # fmt: skip
    """Seconds to generate each number of new tokens in ``lengths`` (greedy, no eos).

    The median of ``repeats`` runs after one warm-up call. With the cache, each step costs
    about the same, so time grows linearly in n; without it, step i re-reads T + i tokens,
    so it grows faster (quadratically once attention dominates).
    """
    generate(model, idx, 1, use_cache=use_cache)  # warm-up: first calls allocate
    seconds = []
    for n in lengths:
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            generate(model, idx, n, use_cache=use_cache)
            runs.append(time.perf_counter() - t0)
        seconds.append(statistics.median(runs))
    return seconds
