"""Generating text with `lmlib.model`'s GPT and Llama: the decoding loop and a KV cache.

Read top to bottom, each piece adds one idea:

- `GenerationConfig`: every decoding choice in one typed object, passed whole to `stream`,
  `generate`, `generate_text`, `lmlib.beam_search.beam_search` and `lmlib.chat.Chat`.
- `left_pad`: prompts of different lengths as one batch, padded on the left so that every
  row's next token goes in the same column.
- `stream`: the decoding loop. The prompt goes through the model once and fills a
  `lmlib.kvcache.KVCache`; after that each step feeds only the newest token. In a batch,
  a prompt repeated in several rows runs once, prompts of very different lengths are not
  all padded to the longest (`lmlib.kvcache.prefill`), and rows that finished leave the
  batch. A sliding window lets the text grow past the model's context. `generate` collects
  what `stream` yields, `generate_text` works on strings through a tokenizer.
- `time_generation`: seconds to generate n tokens, with or without the cache.

What happens to one step's logits (temperature, top-k, top-p, min-p, the repetition
penalty, constraints such as `lmlib.sampling.FixedForm`) is `lmlib.sampling`; keeping
several candidate continuations instead of one is `lmlib.beam_search`.

Shape legend: B batch, T time (prompt length), V vocabulary size.

>>> from lmlib.model import GPT, GPTConfig
>>> _ = torch.manual_seed(0)
>>> model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layers=1, n_heads=2, d_model=8))
>>> config = GenerationConfig(max_new_tokens=4)  # greedy
>>> generate(model.eval(), torch.tensor([[1, 2, 3]]), config).shape  # 3 + 4 tokens
torch.Size([1, 7])
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from lmlib.inputs import check_token_ids
from lmlib.kvcache import prefill
from lmlib.runtime import check_int
from lmlib.sampling import LogitsProcessor, apply_repetition_penalty, sample


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode: Hugging Face's ``GenerationConfig`` names and defaults, checked on
    creation. Every function here also takes the fields as keyword arguments, which override
    the config's: ``generate(model, idx, config, top_k=5)`` is
    ``generate(model, idx, config.replace(top_k=5))``.

    >>> config = GenerationConfig(max_new_tokens=20, do_sample=True, top_p=0.9)
    >>> config.replace(temperature=0.7).temperature
    0.7
    >>> GenerationConfig(top_p=1.5)
    Traceback (most recent call last):
    ...
    ValueError: top_p must be in (0, 1], got 1.5
    """

    max_new_tokens: int = 50  # at most this many new tokens (fewer once every row finishes)
    # Choosing each token
    do_sample: bool = False  # False: greedy, the most likely token; True: draw one (`sample`)
    temperature: float = 1.0  # sampling: < 1 sharpens the distribution, > 1 flattens it
    top_k: int | None = None  # sampling: keep the k most likely tokens (None: no filter)
    top_p: float | None = None  # sampling: keep the fewest tokens with probability >= p
    min_p: float | None = None  # sampling: keep tokens with >= min_p x the top probability
    repetition_penalty: float | None = None  # > 1: tokens already in the text less likely
    logits_processors: Sequence[LogitsProcessor] = ()  # (tokens, logits) -> logits, in order
    num_beams: int = 1  # beam search (`lmlib.beam_search`): candidates kept per prompt
    length_penalty: float = 1.0  # beam search: a hypothesis scores sum(log p) / length ** this
    # Stopping
    eos_token_id: int | list[int] | None = None  # ends a row; any of several ids (Llama 3)
    pad_token_id: int | None = None  # fills the rows that finished (None: the first eos)
    stop: list[list[int]] | None = None  # token-id sequences that end a row
    stop_strings: list[str] | None = None  # text that ends a row (in `generate_text`)
    # What the model reads at each step
    use_cache: bool = True  # False: re-read every position at every step (same tokens, slower)
    sliding_window: int | None = None  # None: prompt + new tokens must fit in block_size;
    # n: the model reads only the last n tokens, so the text can grow past its context

    def __post_init__(self):
        def check(ok: bool, field: str, rule: str):
            if not ok:
                raise ValueError(f"{field} must be {rule}, got {getattr(self, field)!r}")

        def is_int(x, low):
            return isinstance(x, int) and not isinstance(x, bool) and x >= low

        def is_number(x):  # finite: an infinite temperature would make every token alike
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        check(is_int(self.max_new_tokens, 0), "max_new_tokens", "an int >= 0")
        check(isinstance(self.do_sample, bool), "do_sample", "True or False")
        check(is_number(self.temperature) and self.temperature > 0, "temperature",
              "> 0 (greedy decoding is do_sample=False)")  # fmt: skip
        check(self.top_k is None or is_int(self.top_k, 1), "top_k", "None or an int >= 1")
        check(self.top_p is None or (is_number(self.top_p) and 0 < self.top_p <= 1), "top_p",
              "in (0, 1]")  # fmt: skip
        check(self.min_p is None or (is_number(self.min_p) and 0 <= self.min_p <= 1), "min_p",
              "in [0, 1]")  # fmt: skip
        penalty = self.repetition_penalty
        check(penalty is None or (is_number(penalty) and penalty > 0), "repetition_penalty",
              "None or > 0")  # fmt: skip
        object.__setattr__(self, "logits_processors", tuple(self.logits_processors))
        check(all(callable(p) for p in self.logits_processors), "logits_processors",
              "callables processor(tokens, logits) -> logits")  # fmt: skip
        check(is_int(self.num_beams, 1), "num_beams", "an int >= 1")
        check(is_number(self.length_penalty), "length_penalty", "a number")
        eos = self.eos_token_id
        check(eos is None or is_int(eos, 0) or (isinstance(eos, (list, tuple))
              and all(is_int(e, 0) for e in eos)), "eos_token_id",
              "None, a token id or a list of token ids")  # fmt: skip
        check(self.pad_token_id is None or is_int(self.pad_token_id, 0), "pad_token_id",
              "None or a token id")  # fmt: skip
        check(self.stop is None or all(isinstance(s, (list, tuple)) and s and
              all(is_int(t, 0) for t in s) for s in self.stop), "stop",
              "None or a list of non-empty token-id lists (text: stop_strings)")  # fmt: skip
        check(self.stop_strings is None or all(isinstance(s, str) and s
              for s in self.stop_strings), "stop_strings",
              "None or a list of non-empty strings")  # fmt: skip
        check(isinstance(self.use_cache, bool), "use_cache", "True or False")
        check(self.sliding_window is None or is_int(self.sliding_window, 1), "sliding_window",
              "None or an int >= 1")  # fmt: skip
        if self.stop and self.pad_token_id is None and eos in (None, [], ()):
            raise ValueError("stop sequences need a pad_token_id (or an eos_token_id) for the "
                             "rows that finish first")  # fmt: skip
        if self.num_beams > 1 and self.do_sample:
            raise ValueError("num_beams > 1 is beam search, which is deterministic here: set "
                             "do_sample=False")  # fmt: skip

    def replace(self, **changes) -> GenerationConfig:
        """A copy with ``changes`` applied, checked like a new config."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise TypeError(f"unknown generation option(s) {unknown}; GenerationConfig's "
                            f"fields are {', '.join(names)}")  # fmt: skip
        return dataclasses.replace(self, **changes)


def resolve(config: GenerationConfig | None, **options) -> GenerationConfig:
    """``config`` (default: ``GenerationConfig()``) with keyword ``options`` applied.

    >>> resolve(None, max_new_tokens=5).max_new_tokens
    5
    """
    if config is None:
        config = GenerationConfig()
    elif not isinstance(config, GenerationConfig):
        hint = " (pass max_new_tokens=... by name)" if isinstance(config, int) else ""
        raise TypeError(f"config must be a GenerationConfig, got {config!r}{hint}")
    return config.replace(**options) if options else config


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
    if isinstance(rows, (str, torch.Tensor)) or not rows or any(len(r) == 0 for r in rows):
        raise ValueError("rows must be a non-empty list of token-id lists, each prompt with at "
                         "least one token")  # fmt: skip
    check_int(pad_id, "pad_id", low=0)
    T = max(len(r) for r in rows)
    idx = torch.tensor([[pad_id] * (T - len(r)) + list(r) for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    return idx, mask


def token_id_list(token_ids) -> list[int]:
    """None, one id or several ids -> a list (eos may be several tokens, as in Llama 3).

    >>> token_id_list(None), token_id_list(2), token_id_list((2, 3))
    ([], [2], [2, 3])
    """
    if token_ids is None:
        return []
    ids = [token_ids] if isinstance(token_ids, numbers.Integral) else list(token_ids)
    return [int(check_int(t, "token id", low=0)) for t in ids]


def check_prompt(model, idx, cfg: GenerationConfig, attention_mask=None) -> int:
    """Clear errors for a bad prompt; returns how many of the last positions the model reads
    at each step (the sliding window, else the whole ``block_size``)."""
    config = getattr(model, "config", None)
    if not isinstance(model, torch.nn.Module) or not hasattr(config, "block_size"):
        raise TypeError(f"model must be lmlib's GPT or Llama (a module with config."
                        f"block_size), got {type(model).__name__}")  # fmt: skip
    if isinstance(idx, torch.Tensor) and idx.dim() == 2 and idx.size(1) == 0:
        raise ValueError("idx must be a non-empty (B, T) tensor of token ids, got an empty one")
    check_token_ids(idx, config.vocab_size)  # a float prompt would come back as float "ids"
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != idx.shape:
            shape = getattr(attention_mask, "shape", type(attention_mask).__name__)
            raise ValueError(f"attention_mask must have idx's shape {tuple(idx.shape)}, "
                             f"got {shape}")  # fmt: skip
        if not attention_mask[:, -1].all():
            raise ValueError("pad prompts on the left (see left_pad): the last column of "
                             "attention_mask must be all ones")  # fmt: skip
    T, n, block_size = idx.size(1), cfg.max_new_tokens, model.config.block_size
    if cfg.sliding_window is None:
        if T + n > block_size:
            raise ValueError(f"prompt length {T} + max_new_tokens {n} exceeds the model's "
                             f"block_size {block_size} (sliding_window reads only the last "
                             f"tokens)")  # fmt: skip
        return block_size
    if cfg.sliding_window > block_size:
        raise ValueError(f"sliding_window {cfg.sliding_window} exceeds the model's block_size "
                         f"{block_size}")  # fmt: skip
    return cfg.sliding_window


def _ends_with(seq: torch.Tensor, stop: list[list[int]]) -> torch.Tensor:
    """(B,) bool: whether each row of seq (B, T) ends with one of the stop sequences."""
    done = torch.zeros(seq.size(0), dtype=torch.bool, device=seq.device)
    for s in stop:
        if 0 < len(s) <= seq.size(1):
            tail = torch.tensor(s, device=seq.device)
            done |= (seq[:, -len(s) :] == tail).all(dim=-1)
    return done


@torch.inference_mode()
def stream(model, idx: torch.Tensor, config: GenerationConfig | None = None, *,
           attention_mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
           **options) -> Iterator[torch.Tensor]:  # fmt: skip
    """Yield the next token of every row, a (B,) tensor, one step at a time.

    The arguments are `generate`'s. A row is finished once it produces an eos token or ends
    with a ``stop`` sequence; from then on it gets ``pad_token_id`` (default: the first eos).
    The loop ends after ``max_new_tokens`` steps or when every row is finished.

    >>> from lmlib.model import GPT, GPTConfig
    >>> model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layers=1, n_heads=2, d_model=8))
    >>> [tuple(t.shape) for t in stream(model.eval(), torch.tensor([[1, 2]]), max_new_tokens=3)]
    [(1,), (1,), (1,)]
    """
    cfg = resolve(config, **options)
    if cfg.num_beams > 1:
        raise ValueError("num_beams > 1 is beam search: call lmlib.beam_search.beam_search")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be None or a torch.Generator, got {generator!r}")
    window = check_prompt(model, idx, cfg, attention_mask)  # the model reads the last `window`
    B, T = idx.shape
    eos = token_id_list(cfg.eos_token_id)
    pad_token_id = eos[0] if cfg.pad_token_id is None and eos else cfg.pad_token_id
    eos = torch.tensor(eos, dtype=torch.long, device=idx.device)
    stop = [list(s) for s in cfg.stop or []]
    mask = None
    if attention_mask is not None:  # new tokens are real: ones after the prompt's mask
        mask_buffer = torch.ones(B, T + cfg.max_new_tokens, dtype=torch.long, device=idx.device)
        mask_buffer[:, :T] = attention_mask
        mask = mask_buffer[:, :T]  # (B, T + tokens so far)
    # The cache holds the prompt and every new token, at most `window` positions. Once the
    # text is longer the window slides: every position in it shifts by one at each step, so
    # the cached keys and values no longer apply and the model re-reads the window instead.
    use_cache = cfg.use_cache and T <= window
    cache_len = min(T + cfg.max_new_tokens, window)
    cache = None
    # With the cache, a batch wastes work in three ways, and all are skipped. The prompt's
    # pass (`lmlib.kvcache.prefill`) runs a prompt repeated in several rows (several samples
    # of one prompt) once, and prompts of very different lengths in groups, each padded only
    # to its own longest. Rows that finished leave the batch: the model runs on the
    # `running` rows only, and the others get a certain pad token, so sampling draws the
    # same random numbers for every row as before.
    # (A model whose rows carry more than their tokens says so: `lmlib.seq2seq.SourceDecoder`.)
    shrink = not getattr(model, "fixed_batch", False)
    running = None  # None: every row; else the (A,) row numbers still in the batch
    # Every token goes into one preallocated buffer: `seq` is a view of its filled columns,
    # so a step costs no copy of the text so far (torch.cat would copy all of it each time).
    buffer = torch.empty(B, T + cfg.max_new_tokens, dtype=torch.long, device=idx.device)
    buffer[:, :T] = idx
    seq = buffer[:, :T]  # (B, T + tokens so far)
    unseen = seq  # what the cache has not read yet: the prompt, then one token at a time
    finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
    can_finish = len(eos) > 0 or len(stop) > 0  # else no row ever finishes: skip the checks
    for step in range(cfg.max_new_tokens):
        if seq.size(1) > window:
            cache, use_cache, running = None, False, None  # the window slides from here on
        if use_cache and step == 0:
            logits, cache = prefill(model, idx, attention_mask, cache_len, shrink=shrink)
        elif use_cache:
            rows = slice(None) if running is None else running
            out = model(
                unseen[rows],
                cache=cache,
                attention_mask=None if mask is None else mask[rows],
                last_only=True,
            )
            logits = out.logits[:, -1].float()  # (A, V): scores for the next token only
            if running is not None:  # finished rows: only the pad token is possible
                full = logits.new_full((B, logits.size(-1)), float("-inf"))
                full[:, pad_token_id] = 0.0
                full[running] = logits
                logits = full  # (B, V)
        else:  # read every position in the window, every step: the cost the cache saves
            in_window = None if mask is None else mask[:, -window:]
            out = model(seq[:, -window:], attention_mask=in_window, last_only=True)
            logits = out.logits[:, -1].float()  # (B, V): scores for the next token only
        if cfg.repetition_penalty is not None:
            logits = apply_repetition_penalty(logits, seq, cfg.repetition_penalty, mask)
        for process in cfg.logits_processors:
            logits = process(seq, logits)  # (B, V)
        if cfg.do_sample:
            token = sample(logits, cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p,
                           generator)  # (B,)  # fmt: skip
        else:
            token = logits.argmax(dim=-1)  # (B,) greedy: the most likely token
        if pad_token_id is not None and can_finish:
            token = token.masked_fill(finished, pad_token_id)
        buffer[:, T + step] = token
        seq = buffer[:, : T + step + 1]  # (B, T + 1)
        if mask is not None:
            mask = mask_buffer[:, : T + step + 1]
        unseen = seq[:, -1:]  # (B, 1)
        yield token
        if can_finish:
            finished |= torch.isin(token, eos) | _ends_with(seq, stop)
            if finished.all():
                return
            alive = (~finished).nonzero().flatten()  # (A,)
            # Dropping rows copies the cache, so wait until a quarter of the batch is done.
            if (
                shrink
                and cache is not None
                and len(alive) <= 3 * (B if running is None else len(running)) // 4
            ):
                cache.reorder(alive if running is None else torch.searchsorted(running, alive))
                running = alive


def generate(model, idx: torch.Tensor, config: GenerationConfig | None = None, *,
             attention_mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
             streamer: Callable[[torch.Tensor], None] | None = None,
             **options) -> torch.Tensor:  # fmt: skip
    """Continue each prompt in idx (B, T); returns (B, T + new), new <= max_new_tokens.

    - ``config`` (a `GenerationConfig`, with keyword ``options`` overriding its fields)
      says how: greedy by default; with ``do_sample=True`` each token is drawn by
      `lmlib.sampling.sample`, reproducibly for a given ``generator`` seed. (Beam search
      is `lmlib.beam_search.beam_search`.)
    - Prompts of different lengths: pad them on the left (`left_pad`) and pass
      ``attention_mask``; each row then continues exactly as its prompt would alone.
    - ``eos_token_id`` and ``stop`` (token-id sequences) finish a row; finished rows are
      filled with ``pad_token_id``, and generation ends when all rows are finished.
    - ``streamer`` is called with each new token (B,) as soon as it is chosen.
    - The model should be in eval mode (`lmlib.runtime.eval_mode`), or dropout makes every
      step random.
    """
    cfg = resolve(config, **options)
    if streamer is not None and not callable(streamer):
        raise TypeError(f"streamer must be None or a function of each token, got {streamer!r}")
    tokens = []
    for token in stream(model, idx, cfg, attention_mask=attention_mask, generator=generator):
        if streamer is not None:
            streamer(token)
        tokens.append(token)
    if not tokens:
        return idx.clone()
    return torch.cat([idx, torch.stack(tokens, dim=1)], dim=1)  # (B, T + new)


def generate_text(model, tokenizer, prompts: list[str],
                  config: GenerationConfig | None = None, *,
                  generator: torch.Generator | None = None, **options) -> list[str]:  # fmt: skip
    """Continue each prompt string; returns only the new text, cut before any stop string.

    Prompts are tokenized, padded on the left and generated as one batch. ``eos_token_id``
    and ``pad_token_id`` default to the tokenizer's. ``stop_strings`` are checked on the
    decoded text, since a string can be split into tokens in more than one way.
    """
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r:.60}")
    cfg = resolve(config, **options)
    eos_id = cfg.eos_token_id if cfg.eos_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    cfg = cfg.replace(eos_token_id=eos_id, pad_token_id=cfg.pad_token_id
                      if cfg.pad_token_id is not None else pad)  # fmt: skip
    eos, stop = set(token_id_list(eos_id)), cfg.stop_strings or []
    idx, mask = left_pad([tokenizer(p)["input_ids"] for p in prompts], pad)
    device = next(model.parameters()).device
    new = [[] for _ in prompts]  # each row's tokens, up to its eos or stop string
    done = [False] * len(prompts)
    for token in stream(model, idx.to(device), cfg, attention_mask=mask.to(device),
                        generator=generator):  # fmt: skip
        for b, t in enumerate(token.tolist()):
            if done[b]:
                continue
            new[b].append(t)
            done[b] = t in eos or any(s in tokenizer.decode(new[b]) for s in stop)
        if all(done):
            break  # leaving the loop stops the generator: no further model calls
    texts = [tokenizer.decode(row, skip_special_tokens=True) for row in new]
    for s in stop:
        texts = [text.split(s)[0] for text in texts]
    return texts


# --------------------------------------------------------------------------------------------
# Timing


def time_generation(model, idx, lengths: list[int], config: GenerationConfig | None = None, *,
                    repeats: int = 1, **options) -> list[float]:  # fmt: skip
    """Seconds to generate each number of new tokens in ``lengths`` (default: greedy, no eos).

    The median of ``repeats`` runs after one warm-up call. With the cache, each step costs
    about the same, so time grows linearly in n; without it (``use_cache=False``), step i
    re-reads T + i tokens, so it grows faster (quadratically once attention dominates).
    """
    cfg = resolve(config, **options)
    check_int(repeats, "repeats", low=1)  # the median of no runs is undefined
    if isinstance(lengths, (str, numbers.Integral)) or not all(
        isinstance(n, numbers.Integral) and n >= 0 for n in lengths
    ):
        raise TypeError(f"lengths must be a list of ints >= 0 (token counts), got {lengths!r}")
    generate(model, idx, cfg.replace(max_new_tokens=1))  # warm-up: first calls allocate
    seconds = []
    for n in lengths:
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            generate(model, idx, cfg.replace(max_new_tokens=n))
            runs.append(time.perf_counter() - t0)
        seconds.append(statistics.median(runs))
    return seconds
