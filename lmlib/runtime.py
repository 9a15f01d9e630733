"""Reproducibility, device selection and run profiles: the first cell of every chapter.

Every notebook starts with::

    >>> import lmlib
    >>> lmlib.seed_everything(1337)          # Python, NumPy and PyTorch RNGs
    1337
    >>> device = lmlib.get_device()          # "cuda", "mps" or "cpu"

`get_device` honours the ``LMLIB_DEVICE`` environment variable, so a reader with a GPU can
still force the CPU (``LMLIB_DEVICE=cpu``) and reproduce the stored outputs exactly.
Chapters with heavy cells size them with `run_profile`: what a 2-core CPU finishes in
minutes, or more work on a GPU (``LMLIB_PROFILE`` chooses).

`progress_bar` is the one progress bar of the package: a live bar while a loop runs, and
one plain line (``train: 2000/2000 steps``) in a notebook's stored output.

`glue` hands a computed value to the chapter's prose (myst-nb's ``{glue:text}`` role) when
the book is built, and stays silent where myst-nb is not installed (Colab, a plain Jupyter).

`check_int` and `check_number` are the argument checks every module shares: a value a
reader might get wrong (a float where an int belongs, a negative count, an infinite rate)
fails at the call, with an error that names the argument, what it got and what it needs.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import math
import numbers
import os
import platform
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tqdm.auto
import tqdm.notebook

DEVICE_ENV = "LMLIB_DEVICE"
PROFILE_ENV = "LMLIB_PROFILE"
_DEVICES = ("cuda", "mps", "cpu")


def seed_everything(seed: int = 1337, deterministic: bool = True) -> int:
    """Seed Python's, NumPy's and PyTorch's random number generators (all CUDA devices too).

    With ``deterministic=True`` PyTorch is also asked for deterministic kernels where it has
    them (``warn_only``: an op without a deterministic version warns instead of failing), and
    cuDNN's autotuner, which picks kernels by timing them, is switched off.

    Returns the seed, so a cell can print what it used.

    >>> _ = seed_everything(0); a = torch.rand(2); _ = seed_everything(0)
    >>> bool((a == torch.rand(2)).all())
    True
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # cuBLAS needs this workspace setting to be deterministic; it must be set before the
        # first CUDA call, so setting it here (early in a notebook) is the right moment.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return seed


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` (or, when it is None, the ``LMLIB_DEVICE`` environment variable) forces a
    device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``. Asking for a device that is
    not available is an error rather than a silent fall-back, so a GPU run never quietly
    becomes a CPU run.

    >>> get_device("cpu")
    device(type='cpu')
    """
    if prefer is not None and not isinstance(prefer, (str, torch.device)):
        raise TypeError(f"prefer must be None or a device name such as 'cpu', got {prefer!r}")
    prefer = str(prefer) if isinstance(prefer, torch.device) else prefer
    choice = prefer if prefer is not None else os.environ.get(DEVICE_ENV, "").strip()
    if not choice:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = choice.split(":")[0].lower()
    if kind not in _DEVICES:
        raise ValueError(
            f"unknown device {choice!r} (from {'prefer' if prefer else DEVICE_ENV}); "
            f"use one of {', '.join(_DEVICES)}, e.g. {DEVICE_ENV}=cpu"
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {choice!r} was requested but PyTorch sees no CUDA GPU "
            f"(torch {torch.__version__}); unset {DEVICE_ENV} or set it to cpu"
        )
    if kind == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise RuntimeError(f"device 'mps' was requested but is not available; unset {DEVICE_ENV}")
    return torch.device(choice.lower())


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in evaluation mode for a block, and restore the mode it had on the way
    out, also when the block raises (a model left in eval mode trains without dropout).

    >>> net = torch.nn.Dropout(0.5)
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training
    True
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def takes(model, argument: str) -> bool:
    """Whether ``model``'s forward (or ``model`` itself, a function) has a parameter named
    ``argument``: lmlib's GPT and Llama take ``cache`` and ``logits_at``, Hugging Face
    models do not, and code that can use either asks first.

    >>> takes(lambda idx, cache=None: idx, "cache")
    True
    """
    return argument in inspect.signature(getattr(model, "forward", model)).parameters


@dataclass(frozen=True)
class RunProfile:
    """How much work the chapters' heavy cells do. The defaults are the "cpu" profile: each
    notebook finishes in minutes on a 2-core CPU. ``PROFILES["gpu"]`` trains bigger models
    for longer and evaluates more; the cells' code is the same for both.

    >>> PROFILES["cpu"].shakespeare_iters, PROFILES["gpu"].shakespeare_iters
    (600, 5000)
    """

    name: str = "cpu"
    # Chapter 5, training from scratch
    shakespeare_iters: int = 600  # training steps of the character-level Shakespeare GPT
    tang_iters: int = 500  # training steps of the Tang-poem GPT
    tang_batch: int = 16  # the Tang-poem GPT's batch size
    d_model: int = 128  # channels of both character-level GPTs
    # Chapter 5, fine-tuning
    finetune_steps: int = 25  # training steps of each fine-tuning method on SST-2
    encoder_steps: int = 25  # training steps of the MiniLM classifier (of 16 sentences)
    # Chapter 6 (Sections 6.1 and 6.3)
    sst2_test: int = 300  # SST-2 validation sentences scored (a seeded sample of the 872)
    max_shots: int = 4  # the most demonstrations in a few-shot prompt (0, 4, 8)
    probe_train: int = 1000  # training sentences of the MiniLM sentiment probe
    code_samples: int = 4  # samples per programming problem, for pass@k
    # Chapter 7
    ppl_tokens: int = 512  # held-out tokens scored for each number format's perplexity

    def __post_init__(self):
        for field in dataclasses.fields(self)[1:]:
            value = getattr(self, field.name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{field.name} must be a positive int, got {value!r}")


PROFILES = {
    "cpu": RunProfile(),
    "gpu": RunProfile(
        "gpu",
        shakespeare_iters=5000,
        tang_iters=5000,
        tang_batch=64,
        d_model=256,
        finetune_steps=300,
        encoder_steps=600,
        sst2_test=872,
        max_shots=8,
        probe_train=67349,
        code_samples=20,
        ppl_tokens=8192,
    ),
}


def run_profile(device: torch.device | str | None = None) -> RunProfile:
    """The profile named by ``LMLIB_PROFILE`` if set, else "gpu" on a CUDA device and "cpu"
    on any other (``device``: default `get_device`).

    >>> run_profile("cpu").tang_batch  # on a CPU, unless LMLIB_PROFILE says otherwise
    16
    """
    name = os.environ.get(PROFILE_ENV, "").strip().lower()
    if not name:
        device = get_device() if device is None else torch.device(device)
        name = "gpu" if device.type == "cuda" else "cpu"
    if name not in PROFILES:
        raise ValueError(f"unknown run profile {name!r} (from {PROFILE_ENV}); use one of "
                         f"{', '.join(PROFILES)}, e.g. {PROFILE_ENV}=cpu")  # fmt: skip
    return PROFILES[name]


def cache_root() -> Path:
    """Root of everything lmlib caches (downloaded data, converted models).

    ``$LMLIB_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/lmlib``, else ``~/.cache/lmlib``.
    """
    if value := os.environ.get("LMLIB_CACHE_DIR"):
        return Path(value).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "lmlib"


def in_colab() -> bool:
    """True when running inside Google Colab (the setup cells use the same test)."""
    return "google.colab" in sys.modules


def glue(name: str, value, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the prose to quote as ``{glue:text}`name```.

    This is `myst_nb.glue` when myst-nb is installed (the book's build and CI). Colab and a
    plain Jupyter do not install it (it brings Sphinx), and there the prose shows the role
    unrendered anyway, so the call only displays ``value`` if ``display`` asks for it.

    >>> glue("answer", "42")           # no output: display=False
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"glue needs a non-empty string name, got {name!r}")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)


class _NotebookBar(tqdm.notebook.tqdm):
    """tqdm's widget bar, shown under a display id and replaced by one line when it closes."""

    def __init__(self, *args, **kwargs):
        from IPython.display import display  # present: this runs in a Jupyter kernel

        super().__init__(*args, display=False, **kwargs)  # we display it ourselves, below
        bundle = self.container._repr_mimebundle_()  # the widget view and its text fallback
        bundle["text/plain"] = self.line = self.summary(self.total)
        self.handle = display(bundle, raw=True, display_id=True)
        self.displayed = True

    def summary(self, done) -> str:
        """``"train: 2000/2000 steps"``: the line that stays."""
        return f"{self.desc}: " * bool(self.desc) + f"{done}/{self.total} {self.unit}"

    def close(self):
        if self.disable:  # tqdm sets it once closed: close only once
            return
        super().close()
        if self.n != self.total:  # stopped early (an error): say where
            self.line = self.summary(self.n) + ", stopped"
        self.handle.update({"text/plain": self.line}, raw=True)


def progress_bar(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 initial: int = 0, disable: bool = False) -> tqdm.auto.tqdm:  # fmt: skip
    """A tqdm progress bar (same methods) that leaves one clean line in a notebook.

    In a terminal it is tqdm's text bar on stderr. In a Jupyter kernel it is tqdm's widget
    while the loop runs; on `close` the widget's output becomes one line of text. A stored
    notebook (``nbconvert --execute``, Jupyter Book, a saved Colab copy) then holds that
    line, never a widget that pages without its saved state show as a frozen 0% bar. The
    line is also the widget's text fallback from the start, so nbval, which ignores display
    updates, compares the same text: ``progress_bar(total=2000, desc="train",
    unit="steps")`` leaves ``train: 2000/2000 steps``.

    >>> with progress_bar(range(3), desc="demo", disable=True) as bar:
    ...     sum(bar)
    3
    """
    kwargs = dict(total=total, desc=desc, unit=unit, initial=initial, disable=disable)
    # tqdm.auto chose its widget bar: a Jupyter kernel with ipywidgets installed
    if issubclass(tqdm.auto.tqdm, tqdm.notebook.tqdm) and not disable:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            kwargs["total"] = len(iterable)
        return _NotebookBar(iterable, **kwargs)
    return tqdm.auto.tqdm(iterable, **kwargs)


def _os_name() -> str:
    """The operating system and its release, without the kernel build (for readers)."""
    system = platform.system()
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]}".strip()
    if system == "Linux":
        try:
            return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
        except OSError:  # no /etc/os-release, e.g. a minimal container
            return "Linux"
    return f"{system} {platform.release()}".strip()


def environment_summary() -> dict[str, str]:
    """Versions, device and threads, for the (output-ignored) first cell of each chapter.

    >>> sorted(environment_summary())[:4]
    ['device', 'numpy', 'os', 'python']
    """
    info = {
        "python": platform.python_version(),
        "os": _os_name(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    try:  # the version a chapter's Hugging Face cells run with, without importing it
        info["transformers"] = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        pass
    info["device"] = str(get_device())
    info["threads"] = str(torch.get_num_threads())
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# --------------------------------------------------------------------------------------------
# Checking arguments


def _rule(kind: str, low, high, open_low: bool) -> str:
    """What a check needs, in words: "an int >= 1", "a finite number in (0, 1]"."""
    if low is not None and high is not None:
        return f"{kind} in {'(' if open_low else '['}{low}, {high}]"
    if low is not None:
        return f"{kind} {'>' if open_low else '>='} {low}"
    return f"{kind} <= {high}" if high is not None else kind


def check_int(value, name: str, low: int | None = None, high: int | None = None):
    """``value`` if it is an int (not a bool) in [low, high]; else a `TypeError` (not an int)
    or `ValueError` (out of range) that names ``name``, what it got and what it needs.

    >>> check_int(3, "k", low=1)
    3
    >>> check_int(-1, "k", low=1)
    Traceback (most recent call last):
    ...
    ValueError: k must be an int >= 1, got -1
    """
    rule = _rule("an int", low, high, False)
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be {rule}, got {value!r} ({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return value


def check_number(value, name: str, low: float | None = None, high: float | None = None, *,
                 open_low: bool = False):  # fmt: skip
    """``value`` if it is a finite real number (not a bool) in [low, high], or (low, high]
    with ``open_low``; else a `TypeError` or `ValueError` like `check_int`'s.

    >>> check_number(0.5, "top_p", 0, 1, open_low=True)
    0.5
    >>> check_number(float("inf"), "learning_rate", low=0)
    Traceback (most recent call last):
    ...
    ValueError: learning_rate must be a finite number >= 0, got inf
    """
    rule = _rule("a finite number", low, high, open_low)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be {rule}, got {value!r} ({type(value).__name__})")
    too_low = low is not None and (value <= low if open_low else value < low)
    if not math.isfinite(value) or too_low or (high is not None and value > high):
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return value
