"""Batches of a token sequence and the loss estimated on fixed ones (lmlib.batches): windows
shifted by one, reproducible from a seed, the last token reachable; estimates repeatable
and in eval mode; bad data rejected with a clear error."""

import pytest
import torch

from lmlib.batches import estimate_loss, get_batch
from lmlib.model import GPT, GPTConfig

V, T = 8, 8


def token_data(n=300, seed=0):
    return torch.randint(V, (n,), generator=torch.Generator().manual_seed(seed))


def test_get_batch_windows_are_shifted_by_one_and_reproducible():
    data = torch.arange(100, 200)
    x, y = get_batch(data, 5, 7, torch.Generator().manual_seed(3))
    assert x.shape == y.shape == (5, 7) and x.dtype == y.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:])  # the same window, one step later
    for row_x, row_y in zip(x, y):  # each row is a contiguous slice of data
        start = int(row_x[0]) - 100
        assert torch.equal(row_x, data[start : start + 7])
        assert torch.equal(row_y, data[start + 1 : start + 8])
    again = get_batch(data, 5, 7, torch.Generator().manual_seed(3))
    other = get_batch(data, 5, 7, torch.Generator().manual_seed(4))
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    assert not torch.equal(x, other[0])


def test_get_batch_reaches_the_last_token_and_accepts_small_integer_dtypes():
    data = torch.arange(5, dtype=torch.uint8)  # exactly block_size + 1 tokens: one window
    x, y = get_batch(data, 3, 4, torch.Generator().manual_seed(0))
    assert x.dtype == torch.long
    assert x.tolist() == [[0, 1, 2, 3]] * 3 and y.tolist() == [[1, 2, 3, 4]] * 3


@pytest.mark.parametrize(
    "data, error, match",
    [
        (torch.arange(10.0), TypeError, "integer token ids"),
        (torch.arange(10) > 3, TypeError, "integer token ids"),
        (torch.arange(20).view(4, 5), ValueError, "1-D"),
        (list(range(20)), TypeError, "torch tensor"),
        (torch.arange(8), ValueError, "8 tokens, fewer than block_size \\+ 1 = 9"),
    ],
)
def test_get_batch_rejects_bad_data(data, error, match):
    with pytest.raises(error, match=match):
        get_batch(data, 2, 8)


def test_estimate_loss_is_repeatable_in_eval_mode_and_restores_the_mode():
    torch.manual_seed(0)
    config = GPTConfig(block_size=T, vocab_size=V, n_layers=1, n_heads=2, d_model=16, dropout=0.5)
    model = GPT(config)  # dropout would make a train-mode estimate random
    splits = {"train": token_data(seed=1), "val": token_data(seed=2)}
    first = estimate_loss(model, splits, eval_iters=3, batch_size=4, block_size=T)
    assert first == estimate_loss(model, splits, eval_iters=3, batch_size=4, block_size=T)
    assert set(first) == {"train", "val"} and first["train"] != first["val"]
    assert model.training  # back in train mode
    model.eval()
    estimate_loss(model, splits, 1, 2, T)
    assert not model.training  # and an eval-mode model stays in eval mode
    # The same number by hand: the mean of the per-batch losses over the same batches.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        by_hand = [model(*get_batch(splits["val"], 4, T, g)).loss.item() for _ in range(3)]
    assert first["val"] == pytest.approx(sum(by_hand) / 3, rel=1e-6)
