"""`lmlib.sampling`: the logits processors against Hugging Face's, properties every filter
must have, and `FixedForm` by hand."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.generate import left_pad
from lmlib.sampling import (
    FixedForm,
    apply_repetition_penalty,
    apply_temperature,
    draw,
    min_p_filter,
    sample,
    top_k_filter,
    top_p_filter,
)

V = 99


def random_logits(seed, B=4, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, V, generator=g) * scale


@pytest.mark.parametrize("seed", range(3))
def test_processors_match_hugging_face_warpers(seed):
    hf_lp = pytest.importorskip("transformers.generation.logits_process")
    logits = random_logits(seed)
    ids = torch.randint(0, V, (4, 12), generator=torch.Generator().manual_seed(seed))
    cases = [
        (apply_temperature(logits, 0.7), hf_lp.TemperatureLogitsWarper(0.7)),
        (top_k_filter(logits, 5), hf_lp.TopKLogitsWarper(5)),
        (top_k_filter(logits, 500), hf_lp.TopKLogitsWarper(500)),
        (min_p_filter(logits, 0.1), hf_lp.MinPLogitsWarper(0.1)),
        (min_p_filter(logits, 1.0), hf_lp.MinPLogitsWarper(1.0)),
        (apply_repetition_penalty(logits, ids, 1.5), hf_lp.RepetitionPenaltyLogitsProcessor(1.5)),
        (apply_repetition_penalty(logits, ids, 0.5), hf_lp.RepetitionPenaltyLogitsProcessor(0.5)),
    ]
    cases += [(top_p_filter(logits, p), hf_lp.TopPLogitsWarper(p)) for p in (0.01, 0.5, 0.9, 1.0)]
    for got, warper in cases:
        want = warper(ids, logits.clone())
        assert torch.equal(got, want), type(warper).__name__


@pytest.mark.parametrize("scale", [1.0, 3.0, 6.0])  # 1.0: most rows need the full sort
def test_top_p_with_a_large_vocabulary_keeps_what_hugging_face_keeps(scale):
    hf_lp = pytest.importorskip("transformers.generation.logits_process")
    logits = torch.randn(64, 5000, generator=torch.Generator().manual_seed(int(scale))) * scale
    for p in (0.3, 0.9, 0.95):
        ours = top_p_filter(logits, p) > float("-inf")
        theirs = hf_lp.TopPLogitsWarper(p)(None, logits.clone()) > float("-inf")
        probs = logits.softmax(-1)
        for row in (ours != theirs).any(-1).nonzero().flatten().tolist():
            # only the boundary token may differ, when rounding decides it
            (token,) = (ours[row] != theirs[row]).nonzero().flatten().tolist()
            above = probs[row][probs[row] > probs[row, token]].sum()
            assert abs(above - p) < 1e-5, (row, token, above)
        assert (ours == theirs).all(-1).float().mean() > 0.95


def test_repetition_penalty_skips_padding_like_hugging_face():
    hf_lp = pytest.importorskip("transformers.generation.logits_process")
    logits = random_logits(0, B=2)
    idx, mask = left_pad([[3, 4, 5], [7]], pad_id=9)  # pad 9 is not in row 1's text
    got = apply_repetition_penalty(logits, idx, 2.0, mask)
    hf = hf_lp.RepetitionPenaltyLogitsProcessor(2.0, prompt_ignore_length=torch.tensor([0, 2]))
    assert torch.equal(got, hf(idx, logits.clone()))
    assert got[1, 9] == logits[1, 9] and got[1, 7] != logits[1, 7]


def test_repetition_penalty_by_hand():
    logits = torch.tensor([[3.0, -1.0, 0.5, 2.0]])
    got = apply_repetition_penalty(logits, torch.tensor([[0, 1, 0]]), penalty=2.0)
    assert got.tolist() == [[1.5, -2.0, 0.5, 2.0]]  # seen: 0 (positive) and 1 (negative)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), p=st.floats(0.01, 1.0), min_p=st.floats(0.0, 1.0),
       k=st.integers(1, V + 5), scale=st.floats(0.1, 20.0))  # fmt: skip
def test_filters_keep_the_arg_max_and_the_probability_order(seed, p, min_p, k, scale):
    logits = random_logits(seed, scale=scale)
    top = logits.argmax(-1, keepdim=True)
    probs = logits.softmax(-1)
    for kept in (top_p_filter(logits, p), min_p_filter(logits, min_p), top_k_filter(logits, k)):
        keep = kept > float("-inf")  # (B, V)
        assert keep.gather(1, top).all()  # the most likely token always survives
        assert torch.equal(kept[keep], logits[keep])  # survivors are unchanged
        # Whatever is kept, every more likely token is kept too.
        weakest_kept = probs.masked_fill(~keep, 2.0).amin(-1, keepdim=True)  # (B, 1)
        assert (keep | (probs < weakest_kept)).all()
    # top-p keeps at least p of the probability; dropping its weakest token would not.
    keep = top_p_filter(logits, p) > float("-inf")
    mass = (probs * keep).sum(-1)
    assert (mass >= p - 1e-5).all() or keep.sum() == keep.size(0)


def test_sample_draws_only_kept_tokens():
    logits = torch.zeros(1, V)
    logits[0, [3, 5]] = 10.0
    g = torch.Generator().manual_seed(0)
    draws = {sample(logits, top_k=2, generator=g).item() for _ in range(50)}
    assert draws == {3, 5}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    B=st.integers(1, 6),
    n=st.integers(1, 3000),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    zeros=st.floats(0.0, 0.99),
)
def test_draw_gives_torch_multinomials_tokens_and_leaves_the_generator_alike(
    seed, B, n, dtype, zeros
):
    """`draw` makes torch.multinomial's random numbers another way: the same token for
    every row, and the generator left in the same state (the next draw agrees too)."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(B, n, generator=g, dtype=dtype) ** 4  # unnormalized is allowed
    probs[torch.rand(B, n, generator=g) < zeros] = 0.0
    probs[:, torch.randint(n, (1,), generator=g)] = 0.5  # no row is all zeros
    ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    for _ in range(2):
        want = torch.multinomial(probs, 1, generator=theirs).squeeze(-1)
        assert torch.equal(draw(probs, ours), want)


def test_draw_uses_the_global_generator_like_torch_multinomial():
    probs = torch.rand(3, 500)
    torch.manual_seed(7)
    want = torch.multinomial(probs, 1).squeeze(-1)
    torch.manual_seed(7)
    assert torch.equal(draw(probs), want)


@pytest.mark.parametrize(
    "probs, message",
    [
        ([[0.0, 0.0]], "sum of probabilities <= 0"),
        ([[float("nan"), 1.0]], "contains either `inf`, `nan` or element < 0"),
        ([[float("inf"), 1.0]], "contains either `inf`, `nan` or element < 0"),
        ([[-1.0, 2.0]], "contains either `inf`, `nan` or element < 0"),
    ],
)
def test_draw_refuses_what_torch_multinomial_refuses(probs, message):
    with pytest.raises(RuntimeError, match=message):
        torch.multinomial(torch.tensor(probs), 1)
    with pytest.raises(RuntimeError, match=message):
        draw(torch.tensor(probs))


def test_bad_filter_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got 0.0"):
        apply_temperature(random_logits(0), 0.0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got inf"):
        apply_temperature(random_logits(0), float("inf"))  # would make every token alike
    with pytest.raises(TypeError, match="top_k must be an int >= 1, got True"):
        top_k_filter(random_logits(0), True)
    with pytest.raises(TypeError, match="top_p must be a finite number in"):
        top_p_filter(random_logits(0), "0.9")
    with pytest.raises(TypeError, match="idx must be a \\(B, T\\) torch.long tensor"):
        apply_repetition_penalty(random_logits(0), torch.zeros(4, 1), 1.5)
    with pytest.raises(ValueError, match="top_k"):
        top_k_filter(random_logits(0), 0)
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(random_logits(0), 1.5)
    with pytest.raises(ValueError, match="min_p"):
        min_p_filter(random_logits(0), -0.1)
    with pytest.raises(ValueError, match="repetition_penalty"):
        apply_repetition_penalty(random_logits(0), torch.zeros(4, 1, dtype=torch.long), 0.0)


# --------------------------------------------------------------------------------------------
# FixedForm


def test_fixed_form_masks_exactly_the_positions_of_the_form():
    hanzi = torch.zeros(V, dtype=torch.bool)
    hanzi[10:] = True
    form = FixedForm([hanzi, hanzi, 3, hanzi, 4], start=2)  # a form of 5 after 2 tokens
    logits = random_logits(1, B=2)
    for t in range(9):  # sequences of t tokens: the next token goes at position t
        got = form(torch.zeros(2, t, dtype=torch.long), logits)
        position = t - 2
        if position in (0, 1, 3):
            want = logits.masked_fill(~hanzi, float("-inf"))
        elif position in (2, 4):
            want = torch.full_like(logits, float("-inf"))
            want[:, 3 if position == 2 else 4] = logits[:, 3 if position == 2 else 4]
        else:  # inside the prompt or past the form
            want = logits
        assert torch.equal(got, want), t
    assert len(form) == 5


def test_fixed_form_with_sampling_draws_only_allowed_tokens():
    form = FixedForm([torch.arange(V) % 2 == 0, 7])
    g = torch.Generator().manual_seed(0)
    empty, one = torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long)
    evens = {sample(form(empty, random_logits(s, B=1)), generator=g).item() for s in range(40)}
    assert all(t % 2 == 0 for t in evens) and len(evens) > 5
    assert sample(form(one, random_logits(0, B=1)), generator=g).item() == 7


def test_fixed_form_bad_input():
    with pytest.raises(ValueError, match="non-empty list"):
        FixedForm([])
    with pytest.raises(ValueError, match=r"allowed\[1\] must be a \(V,\) bool tensor"):
        FixedForm([3, torch.ones(V)])  # float, not bool
    with pytest.raises(ValueError, match=r"allowed\[0\]"):
        FixedForm([True])
    with pytest.raises(ValueError, match="start"):
        FixedForm([3], start=-1)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        FixedForm([V + 1])(torch.zeros(1, 0, dtype=torch.long), random_logits(0, B=1))
    with pytest.raises(ValueError, match="entries, the vocabulary"):
        FixedForm([torch.ones(5, dtype=torch.bool)])(torch.zeros(1, 0), random_logits(0, B=1))
