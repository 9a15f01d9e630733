"""Bad input across lmlib's public API: what a reader might type by mistake either works
correctly or fails at the call with a ValueError or TypeError that names the argument.

Two parts: the probes of issue 20 that used to give a wrong result or an unclear error, each
a test; then a property suite (hypothesis) that feeds one argument at a time with values of
the wrong type, the wrong sign, zero, non-finite numbers, strings and lists, and checks that
a value is accepted exactly when it is valid (and then gives a correct result).
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.batches import get_batch
from lmlib.classify import label_word_logprobs
from lmlib.data import LabeledSentence
from lmlib.generate import GenerationConfig, generate, time_generation
from lmlib.generation_metrics import (
    corpus_bleu,
    distinct_n,
    pass_at_k,
    rouge,
    rouge_l,
    rouge_n,
)
from lmlib.kvcache import KVCache
from lmlib.metrics import (
    confusion_matrix,
    recall_at_k,
)
from lmlib.model import GPT, GPTConfig, LlamaConfig, lm_loss
from lmlib.ngram import NGramLM
from lmlib.perplexity import sliding_window_perplexity
from lmlib.prompting import demonstrations
from lmlib.quantization import quantize, time_forward
from lmlib.rag import BM25, split_markdown
from lmlib.sampling import apply_temperature, top_k_filter, top_p_filter
from lmlib.scaling import compute_optimal
from lmlib.tokenizers import RegexBPETokenizer
from lmlib.train import TrainConfig, Trainer

torch.set_num_threads(1)
torch.manual_seed(0)
MODEL = GPT(GPTConfig(block_size=16, vocab_size=11, n_layers=1, n_heads=2, d_model=8)).eval()
PROMPT = torch.tensor([[1, 2, 3]])

# --------------------------------------------------------------------------------------------
# The probes of issue 20 that gave a wrong result or an unclear error


def test_negative_grad_clip_and_infinite_learning_rate_are_refused():
    with pytest.raises(ValueError, match="grad_clip must be a finite number > 0, got -1.0"):
        TrainConfig(grad_clip=-1.0)  # was: gradient ascent
    with pytest.raises(ValueError, match="learning_rate must be a finite number >= 0, got inf"):
        TrainConfig(learning_rate=float("inf"), min_lr=0.0)  # was: nan weights, no word


def test_float_prompts_and_targets_are_refused_not_truncated():
    with pytest.raises(TypeError, match="idx must hold integer token ids"):
        generate(MODEL, PROMPT.float(), max_new_tokens=2)  # was: float "ids" returned
    logits = torch.zeros(1, 3, 11)
    with pytest.raises(TypeError, match="targets must hold integer token ids"):
        lm_loss(logits, torch.tensor([[1.7, 2.2, 3.9]]))  # was: truncated to 1, 2, 3


def test_bleu_and_rouge_refuse_strings_they_would_score_by_character():
    with pytest.raises(TypeError, match="each hypothesis must be a list of tokens.*split it"):
        corpus_bleu(["the cat sat"], ["the cat sat"])
    with pytest.raises(TypeError, match="candidate must be a list of tokens"):
        rouge_n("the cat", "the cat")
    assert rouge("the cat", "the cat")["rougeL"] == 1.0  # texts go to rouge()


def test_recall_at_k_refuses_a_negative_k_and_a_string_as_the_relevant_set():
    with pytest.raises(ValueError, match="k must be an int >= 1, got -1"):
        recall_at_k(["a", "b"], {"b"}, k=-1)  # was: 1.0
    with pytest.raises(TypeError, match="relevant must be a set of ids"):
        recall_at_k(["ab", "c"], "ab", k=1)  # was: 0.5, from the letters a and b


def test_special_tokens_refuse_an_empty_string_and_non_int_ids():
    tok = RegexBPETokenizer()
    with pytest.raises(ValueError, match="special token '' must be a non-empty str"):
        tok.register_special_tokens({"": 256})
    with pytest.raises(TypeError, match="must be an int, got 256.5"):
        tok.register_special_tokens({"<|x|>": 256.5})


def test_zero_heads_and_zero_repeats_name_the_argument():
    with pytest.raises(ValueError, match="n_heads must be an int >= 1, got 0"):
        GPTConfig(n_heads=0)  # was: ZeroDivisionError
    with pytest.raises(ValueError, match="repeats must be an int >= 1, got 0"):
        time_generation(MODEL, PROMPT, [1], repeats=0)  # was: StatisticsError
    with pytest.raises(ValueError, match="repeats must be an int >= 1, got 0"):
        time_forward(MODEL, PROMPT, repeats=0)


def test_a_single_string_where_a_list_belongs():
    class Chars:
        def encode(self, text, add_special_tokens=True):
            return [ord(c) % 11 for c in text]

    with pytest.raises(TypeError, match="prompts must be a list of strings"):
        label_word_logprobs(MODEL, Chars(), "good", [" a", " b"])  # was: one prompt per letter


# --------------------------------------------------------------------------------------------
# The property suite


def is_int(v, low=None, high=None):
    return (isinstance(v, int) and not isinstance(v, bool) and (low is None or v >= low)
            and (high is None or v <= high))  # fmt: skip


def is_number(v, low=None, high=None, open_low=False):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return False
    return (low is None or (v > low if open_low else v >= low)) and (high is None or v <= high)


@dataclass
class Case:
    name: str  # the argument, as the error must name it
    call: Callable[[Any], Any]  # calls the API with the value in that argument
    valid: Callable[[Any], bool]  # whether the value should be accepted
    check: Callable[[Any, Any], bool] = lambda result, value: True  # the result is right
    values: Any = None  # a strategy other than the default


# Values a reader might pass by mistake: wrong types, signs, zero, nan and inf, strings, lists.
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 6),
                   st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([float("inf"), float("nan"), -1, 0, 0.5, 1.0, 2.5]),
                   st.text(max_size=3), st.lists(st.integers(-1, 3), max_size=3))  # fmt: skip
HASHABLE = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(),
                     st.text(max_size=3))  # fmt: skip
TENSORS = st.sampled_from([
    torch.tensor([[1, 2]]), torch.tensor([[1.0, 2.0]]), torch.tensor([1, 2]),
    torch.tensor([[True, False]]), torch.tensor([[1, 11]]), torch.tensor([[-1, 2]]), [[1, 2]],
])  # fmt: skip
TARGETS = st.sampled_from([
    torch.tensor([[1, -100, 3]]), torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1, 2]]),
    [[1, 2, 3]], torch.tensor([[True, False, True]]),
])  # fmt: skip
LOGITS = torch.tensor([[0.5, 3.0, 2.0, -1.0, 1.0]])
POOL = [LabeledSentence(w, i % 2) for i, w in enumerate("good bad great awful fine".split())]
PASSAGES = split_markdown("# A\nOne two.\n\nThree four.", "doc", max_words=2)


def generate_ok(idx):
    ok = isinstance(idx, torch.Tensor) and idx.dim() == 2 and idx.dtype == torch.long
    return ok and bool((idx >= 0).all() and (idx < 11).all())


def cache_after_two(length):
    cache = KVCache(n_layers=1, batch_size=1, n_kv_heads=1, max_len=4, head_dim=2)
    cache.layers[0].update(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    cache.crop(length)
    return cache.length


CASES = [
    Case("max_new_tokens", lambda v: GenerationConfig(max_new_tokens=v), lambda v: is_int(v, 0)),
    Case("temperature", lambda v: GenerationConfig(temperature=v),
         lambda v: is_number(v, 0, open_low=True)),
    Case("top_k", lambda v: GenerationConfig(top_k=v), lambda v: v is None or is_int(v, 1)),
    Case("top_p", lambda v: GenerationConfig(top_p=v),
         lambda v: v is None or is_number(v, 0, 1, open_low=True)),
    Case("grad_clip", lambda v: TrainConfig(grad_clip=v),
         lambda v: v is None or is_number(v, 0, open_low=True)),
    Case("learning_rate", lambda v: TrainConfig(learning_rate=v), lambda v: is_number(v, 1e-4)),
    Case("batch_size", lambda v: TrainConfig(batch_size=v), lambda v: is_int(v, 1)),
    Case("max_iters", lambda v: TrainConfig(max_iters=v), lambda v: is_int(v, 100)),
    Case("iters", lambda v: Trainer(MODEL, torch.arange(40) % 11,
                                    cfg=TrainConfig(max_iters=0, progress=False, block_size=8,
                                                    warmup_iters=0, device="cpu")).train(v),
         lambda v: v is None or is_int(v, 0)),
    Case("n_heads", lambda v: GPTConfig(n_heads=v, d_model=8),
         lambda v: is_int(v, 1) and 8 % v == 0),
    Case("n_kv_heads", lambda v: LlamaConfig(n_heads=4, n_kv_heads=v, d_model=16),
         lambda v: is_int(v, 1) and 4 % v == 0),
    Case("dropout", lambda v: GPTConfig(dropout=v), lambda v: is_number(v, 0, 1)),
    Case("idx", lambda v: generate(MODEL, v, max_new_tokens=1), generate_ok,
         lambda out, v: out.dtype == torch.long and torch.equal(out[:, :-1], v), TENSORS),
    Case("targets", lambda v: lm_loss(torch.zeros(1, 3, 4), v),
         lambda v: isinstance(v, torch.Tensor) and v.dtype == torch.long and v.shape == (1, 3),
         lambda loss, v: abs(loss.item() - math.log(4)) < 1e-6, TARGETS),
    Case("k", lambda v: recall_at_k(["a", "b", "c"], {"b"}, k=v), lambda v: is_int(v, 1),
         lambda r, v: r == (1.0 if v >= 2 else 0.0)),
    Case("relevant", lambda v: recall_at_k([1, 2, 3], v, k=2),
         lambda v: isinstance(v, list) and len(v) > 0,
         lambda r, v: r == len(set(v) & {1, 2}) / len(set(v))),
    Case("each hypothesis", lambda v: corpus_bleu([v], [["a", "b"]]),
         lambda v: isinstance(v, list), lambda score, v: 0 <= score <= 100),
    Case("candidate", lambda v: rouge_l(v, ["a"]), lambda v: isinstance(v, list),
         lambda r, v: r["recall"] == (1.0 if "a" in v else 0.0)),
    Case("candidate", lambda v: rouge(v, "a b"), lambda v: isinstance(v, str)),
    Case("n", lambda v: distinct_n([[1, 2, 3]], n=v), lambda v: is_int(v, 1, 3),
         lambda r, v: r == 1.0),
    Case("n", lambda v: pass_at_k(n=v, c=1, k=1), lambda v: is_int(v, 1),
         lambda p, v: p == pytest.approx(1 / v)),
    Case("every label in pred", lambda v: confusion_matrix([0, 1], [1, v]), lambda v: is_int(v, 0),
         lambda m, v: m[1][v] == 1 and sum(map(sum, m)) == 2),
    Case("top_k", lambda v: top_k_filter(LOGITS, v), lambda v: is_int(v, 1),
         lambda out, v: int(torch.isfinite(out).sum()) == min(v, 5)),
    Case("top_p", lambda v: top_p_filter(LOGITS, v), lambda v: is_number(v, 0, 1, open_low=True),
         lambda out, v: bool(torch.isfinite(out[0, 1]))),  # the top token always stays
    Case("temperature", lambda v: apply_temperature(LOGITS, v),
         lambda v: is_number(v, 0, open_low=True),
         lambda out, v: torch.equal(out, LOGITS / v)),
    Case("flops", lambda v: compute_optimal(v), lambda v: is_number(v, 0, open_low=True),
         lambda nd, v: 6 * nd[0] * nd[1] == pytest.approx(v)),
    Case("n", lambda v: NGramLM(n=v), lambda v: is_int(v, 1)),
    Case("k", lambda v: NGramLM(n=2, k=v), lambda v: is_number(v, 0)),
    Case("special token", lambda v: RegexBPETokenizer().register_special_tokens({"<|x|>": v}),
         lambda v: is_int(v, 256), values=HASHABLE),
    Case("special token", lambda v: RegexBPETokenizer().register_special_tokens({v: 300}),
         lambda v: isinstance(v, str) and v != "", values=HASHABLE),
    Case("repeats", lambda v: time_generation(MODEL, PROMPT, [1], repeats=v),
         lambda v: is_int(v, 1, 6)),
    Case("n_layers", lambda v: KVCache(v, 1, 1, 4, 2), lambda v: is_int(v, 1)),
    Case("length", cache_after_two, lambda v: is_int(v, 0, 2), lambda n, v: n == v),
    Case("batch_size", lambda v: get_batch(torch.arange(20), v, 4), lambda v: is_int(v, 1),
         lambda xy, v: xy[0].shape == (v, 4) and torch.equal(xy[0][:, 1:], xy[1][:, :-1])),
    Case("window", lambda v: sliding_window_perplexity(MODEL, torch.arange(10) % 11, v),
         lambda v: is_int(v, 1), lambda ppl, v: ppl > 1),
    Case("max_words", lambda v: split_markdown("One two.\n\nThree.", "d", v),
         lambda v: is_int(v, 1)),
    Case("k1", lambda v: BM25(PASSAGES, k1=v), lambda v: is_number(v, 0)),
    Case("bits", lambda v: quantize(torch.ones(2, 4), bits=v), lambda v: is_int(v, 2, 8),
         lambda qs, v: bool((qs[0] == 2 ** (v - 1) - 1).all())),
    Case("k", lambda v: demonstrations(POOL, v, balanced=False), lambda v: is_int(v, 0, 5),
         lambda demos, v: len(demos) == v),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[f"{c.name}-{i}" for i, c in enumerate(CASES)])
@settings(max_examples=30, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_value_is_accepted_exactly_when_valid_and_named_when_not(case, data):
    value = data.draw(VALUES if case.values is None else case.values, label=case.name)
    try:
        result = case.call(value)
    except (ValueError, TypeError) as err:
        assert re.search(rf"\b{re.escape(case.name)}\b", str(err)), (value, str(err))
        assert not case.valid(value), f"{value!r} is valid but was refused: {err}"
        return
    assert case.valid(value), f"{value!r} was accepted"
    assert case.check(result, value), (value, result)
