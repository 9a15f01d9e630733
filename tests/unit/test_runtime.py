"""Seeding, device selection, run profiles, eval mode, the environment summary and the
progress bar, glue."""

import platform
import random
import sys

import numpy as np
import pytest
import torch

import lmlib
from lmlib.runtime import (
    DEVICE_ENV,
    PROFILE_ENV,
    PROFILES,
    RunProfile,
    eval_mode,
    glue,
    progress_bar,
    run_profile,
)


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


def test_environment_summary_names_versions_device_and_threads_only():
    info = lmlib.environment_summary()
    assert info["torch"] == torch.__version__ and info["numpy"] == np.__version__
    assert info["python"] == platform.python_version()
    assert info["device"] in {"cpu", "cuda", "mps"}
    assert info["threads"] == str(torch.get_num_threads())
    # The OS by name, without the kernel's build string (e.g. "6.1.0-18-amd64").
    assert info["os"] and "platform" not in info
    if platform.system() == "Linux":
        assert platform.release() not in " ".join(info.values())


# --------------------------------------------------------------------------------------------
# Run profiles


def test_cpu_profile_keeps_the_numbers_the_chapters_had():
    """The PROFILE/SIZES dicts that Chapters 5-7 copied, before RunProfile replaced them (the
    CPU fine-tuning steps cut from 60 and 150, then from 30 and 60 to 25 and 40, then the
    encoder's to 25, so that Section 5.3 fits in three minutes; Chapter 6 scoring 400 SST-2
    sentences with up to 4 demonstrations on a CPU, cut to 300, and its probe from 4,000 to
    2,000, then 1,000 sentences, so that Section 6.1 fits in three minutes; Chapter 7's
    perplexity of each number format on 512 held-out tokens instead of 2,048; Section 5.1
    training 600 and 500 steps on a CPU so that it fits in three minutes; Section 6.3's
    samples per problem cut from 5 to 4, so that the whole book fits in fifteen)."""
    chapters = {
        "cpu": dict(shakespeare_iters=600, tang_iters=500, tang_batch=16, d_model=128,
                    finetune_steps=25, encoder_steps=25, sst2_test=300, max_shots=4,
                    probe_train=1000, code_samples=4, ppl_tokens=512),
        "gpu": dict(shakespeare_iters=5000, tang_iters=5000, tang_batch=64, d_model=256,
                    finetune_steps=300, encoder_steps=600, sst2_test=872, max_shots=8,
                    probe_train=67349, code_samples=20, ppl_tokens=8192),
    }  # fmt: skip
    for name, sizes in chapters.items():
        assert PROFILES[name] == RunProfile(name, **sizes)
    assert RunProfile() == PROFILES["cpu"]


def test_run_profile_follows_the_device_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert run_profile("cpu").name == "cpu"
    assert run_profile(torch.device("cuda")).name == "gpu"  # only the device type is read
    assert run_profile().name == ("gpu" if lmlib.get_device().type == "cuda" else "cpu")
    monkeypatch.setenv(PROFILE_ENV, "GPU")
    assert run_profile("cpu") is PROFILES["gpu"]
    monkeypatch.setenv(PROFILE_ENV, "tpu")
    with pytest.raises(ValueError, match="LMLIB_PROFILE=cpu"):
        run_profile("cpu")


def test_run_profile_rejects_bad_sizes():
    with pytest.raises(ValueError, match="tang_batch must be a positive int"):
        RunProfile(tang_batch=0)
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        RunProfile(d_model=12.5)


# --------------------------------------------------------------------------------------------
# Eval mode


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_mode_it_found_even_on_error(training):
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)).train(training)
    with eval_mode(net) as same:
        assert same is net and not net.training and not net[1].training
    assert net.training is training and net[1].training is training
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        raise RuntimeError("boom")
    assert net.training is training and net[1].training is training


# --------------------------------------------------------------------------------------------
# Progress bar

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_progress_bar_outside_a_notebook_is_tqdms_text_bar(capsys):
    assert sum(progress_bar(range(4), desc="demo", unit="steps")) == 6
    err = capsys.readouterr().err
    assert "demo: 100%" in err and "4/4" in err  # tqdm's own final line, on stderr
    with progress_bar(total=3, desc="quiet", disable=True) as bar:
        bar.update(3)
    assert capsys.readouterr() == ("", "")


def test_progress_bar_in_a_kernel_leaves_one_line_and_no_widget():
    """In a real Jupyter kernel: the live output is tqdm's widget whose text fallback is
    already the final line (what nbval, which ignores display updates, compares); the stored
    output (nbclient, as nbconvert and Jupyter Book run it) is that line alone."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("ipywidgets")
    first_shown = []

    class Recorder(nbclient.NotebookClient):
        def output(self, outs, msg, display_id, cell_index):
            if msg["msg_type"] == "display_data":
                first_shown.append(msg["content"]["data"])
            return super().output(outs, msg, display_id, cell_index)

    cells = [
        "from lmlib.runtime import progress_bar\n"
        "for _ in progress_bar(range(5), desc='demo', unit='steps'):\n    pass",
        "bar = progress_bar(total=4, desc='train', unit='steps')\nbar.update(1)\nbar.close()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    Recorder(nb, timeout=120, kernel_name="python3").execute()
    stored = [cell.outputs for cell in nb.cells]
    assert stored[0] == [{"output_type": "display_data", "metadata": {},
                          "data": {"text/plain": "demo: 5/5 steps"}}]  # fmt: skip
    assert stored[1][0]["data"] == {"text/plain": "train: 1/4 steps, stopped"}
    assert [set(shown) for shown in first_shown] == [{WIDGET_VIEW, "text/plain"}] * 2
    assert [shown["text/plain"] for shown in first_shown] == ["demo: 5/5 steps"] + [
        "train: 4/4 steps"
    ]


def test_glue_is_myst_nbs_where_it_is_installed(monkeypatch):
    """With myst-nb (the book's build) the value is stored as myst-nb stores it; the
    function called is myst_nb.glue itself, with the same arguments."""
    myst_nb = pytest.importorskip("myst_nb")
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda *args, **kw: calls.append((args, kw)))
    glue("val_loss", "1.87")
    glue("shown", 3, display=True)
    assert calls == [(("val_loss", "1.87"), {"display": False}), (("shown", 3), {"display": True})]


def test_glue_without_myst_nb_shows_only_what_it_is_asked_to(monkeypatch, capsys):
    """Colab has no myst-nb: a hidden value is dropped silently, a displayed one is shown."""
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import myst_nb now raises ImportError
    glue("hidden", "42")
    assert capsys.readouterr().out == ""
    glue("shown", "42", display=True)
    assert "42" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["", None, 3])
def test_glue_rejects_a_name_that_is_not_a_string(bad):
    with pytest.raises(ValueError, match="non-empty string name"):
        glue(bad, "x")
