"""lmlib.neural_lm: Bengio's NPLM against its formula written out, its window, its perplexity."""

import math

import pytest
import torch
import torch.nn.functional as F

from lmlib.neural_lm import NPLM, NPLMConfig, perplexity
from lmlib.train import TrainConfig, Trainer

torch.set_num_threads(1)


def tiny(direct=True, seed=0):
    torch.manual_seed(seed)
    return NPLM(NPLMConfig(vocab_size=7, context=3, d_embed=4, d_hidden=5, direct=direct))


@pytest.mark.parametrize("direct", [True, False])
def test_nplm_matches_bengio_formula(direct):
    """y = b + W x + U tanh(d + H x) on the concatenated embeddings, then a softmax."""
    model = tiny(direct).eval()
    idx = torch.tensor([[2, 5, 1, 6, 0]])
    logits = model(idx).logits[0]  # (T, V)
    C = model.embed.weight  # (V + 1, C): the last row is the padding id
    H, d = model.hidden.weight, model.hidden.bias
    U, b = model.out.weight, model.out.bias
    for t in range(idx.shape[1]):
        window = [model.pad_id] * 3 + idx[0].tolist()
        context = window[t + 1 : t + 4]  # the 3 ids that end at position t
        x = torch.cat([C[i] for i in context])  # [C(w_{t-2}); C(w_{t-1}); C(w_t)]
        y = b + U @ torch.tanh(d + H @ x)
        if direct:
            y = y + model.direct.weight @ x
        torch.testing.assert_close(logits[t], y, rtol=1e-5, atol=1e-6)
    probs = logits.softmax(-1)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))


def test_prediction_depends_on_the_last_n_minus_1_tokens_only():
    model = tiny().eval()
    idx = torch.tensor([[1, 2, 3, 4, 5, 6]])
    base = model(idx).logits
    far = idx.clone()
    far[0, 1] = 0  # 4 places before position 5: outside its 3-token window
    near = idx.clone()
    near[0, 3] = 0  # inside the windows of positions 3, 4 and 5
    assert torch.equal(model(far).logits[0, 4:], base[0, 4:])
    assert not torch.allclose(model(near).logits[0, 5], base[0, 5])
    assert torch.equal(model(near).logits[0, :3], base[0, :3])  # the past is untouched


def test_perplexity_is_exp_of_mean_cross_entropy():
    """Every token scored once, the first from an all-padding context; pieces do not matter."""
    model = tiny().eval()
    ids = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(1))
    inputs = torch.cat([torch.tensor([model.pad_id]), ids[:-1]])
    padded = [model.pad_id] * 2 + inputs.tolist()
    contexts = torch.tensor([padded[t : t + 3] for t in range(len(ids))])  # (T, N) by hand
    with torch.no_grad():
        expected = math.exp(F.cross_entropy(model.score(contexts), ids).item())
    assert contexts[0].tolist() == [model.pad_id] * 3
    assert perplexity(model, ids) == pytest.approx(expected, rel=1e-6)
    for pieces in (1, 3, 7, 49):
        assert perplexity(model, ids, batch_tokens=pieces) == pytest.approx(expected, rel=1e-6)
    # the forward pass on the same text agrees for every token but the first
    with torch.no_grad():
        ce = F.cross_entropy(model(ids[None, :-1]).logits[0], ids[1:], reduction="sum").item()
        first = F.cross_entropy(model.score(contexts[:1]), ids[:1], reduction="sum").item()
    assert expected == pytest.approx(math.exp((ce + first) / len(ids)), rel=1e-6)


def test_trainer_trains_it_and_generalizes_to_unseen_contexts():
    """The text is "x y" pairs with y = x + 5: with 2 tokens of context the NPLM learns the
    rule, and the perplexity of held-out pairs falls far below the uniform 10."""
    g = torch.Generator().manual_seed(0)
    firsts = torch.randint(0, 5, (400,), generator=g)
    data = torch.stack([firsts, firsts + 5], 1).flatten()  # x, x + 5, x', x' + 5, ...
    torch.manual_seed(0)
    model = NPLM(NPLMConfig(vocab_size=10, context=2, d_embed=8, d_hidden=32))
    cfg = TrainConfig(max_iters=150, batch_size=16, block_size=16, learning_rate=1e-2,
                      min_lr=1e-3, warmup_iters=10, eval_interval=0, eval_iters=0,
                      progress=False, device="cpu")  # fmt: skip
    history = Trainer(model, data, cfg=cfg).train()
    assert history.train_loss[0] > 2.0  # about ln 10 = 2.30
    held_out = torch.tensor([3, 8, 0, 5, 4, 9, 1, 6, 2, 7])
    # every second token is certain (p ~ 1), the others uniform over 5: ppl -> sqrt(5) = 2.24
    assert perplexity(model, held_out) < 2.6


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="context"):
        NPLMConfig(context=0)
    with pytest.raises(TypeError, match="NPLMConfig"):
        NPLM({"vocab_size": 5})
    model = tiny()
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 7\), got 0..7"):
        model(torch.tensor([[0, 7]]))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        perplexity(model, [])
    with pytest.raises(ValueError, match=r"in \[0, 7\)"):
        perplexity(model, [1, 7])
    with pytest.raises(TypeError, match="NPLM"):
        perplexity(torch.nn.Linear(2, 2), [1, 2])
