"""Seeding and device selection."""

import random

import numpy as np
import pytest
import torch

import lmlib
from lmlib.runtime import DEVICE_ENV


def draw():
    return random.random(), np.random.rand(), torch.rand(3).tolist(), torch.randn(2).tolist()


def test_seed_everything_makes_every_rng_repeat():
    lmlib.seed_everything(123)
    first = draw()
    lmlib.seed_everything(123)
    assert draw() == first
    lmlib.seed_everything(124)
    assert draw() != first


def test_seed_everything_turns_on_deterministic_algorithms():
    lmlib.seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "1", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed must be an integer"):
        lmlib.seed_everything(bad)


def test_get_device_default_is_an_available_device(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    device = lmlib.get_device()
    expected = "cuda" if torch.cuda.is_available() else None
    assert device.type in {"cuda", "mps", "cpu"}
    if expected:
        assert device.type == expected
    torch.zeros(1, device=device)  # usable, not just named


def test_environment_variable_overrides_the_device(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert lmlib.get_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "tpu")
    with pytest.raises(ValueError, match="LMLIB_DEVICE=cpu"):
        lmlib.get_device()


def test_prefer_argument_wins_over_environment(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "tpu")
    assert lmlib.get_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_unavailable_cuda_is_an_error_not_a_silent_fallback(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        lmlib.get_device()


def test_environment_summary_names_versions():
    info = lmlib.environment_summary()
    assert info["torch"] == torch.__version__
    assert info["device"] in {"cpu", "cuda", "mps"}
