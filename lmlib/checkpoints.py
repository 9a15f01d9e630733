"""Checkpoint files that say what went wrong: a checksum, and checks before loading (Ch. 5).

`lmlib.train.Trainer` saves a run as one dict (the model's and optimizer's state dicts, the
step, the history, the config, the random generators) with `write_checkpoint`, which adds
the SHA-256 of everything in it and replaces the file atomically. `read_checkpoint` gives
the dict back only if the file is a whole, undamaged checkpoint; otherwise its error says
what the file is instead (truncated, a plain state dict, another kind of dict, or damaged
bytes). `check_model_fits` and `check_optimizer_fits` compare a checkpoint with the model
and optimizer it is about to be loaded into, so that a refused checkpoint changes nothing.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     write_checkpoint({"step": 3, "w": torch.ones(2)}, f"{folder}/run.pt")
...     read_checkpoint(f"{folder}/run.pt", keys=("step", "w"))["step"]
3
"""

from __future__ import annotations

import hashlib
import os
import warnings

import torch


def _feed(digest, obj) -> None:
    """Feed ``obj`` (tensors, dicts, lists, numbers, strings) into ``digest``, in order."""
    if isinstance(obj, torch.Tensor):
        flat = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor {flat.dtype} {tuple(obj.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())  # the raw bytes, any dtype
    elif isinstance(obj, dict):
        digest.update(f"dict {len(obj)};".encode())
        for key, value in obj.items():
            _feed(digest, key)
            _feed(digest, value)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__} {len(obj)};".encode())
        for value in obj:
            _feed(digest, value)
    else:
        digest.update(f"{type(obj).__name__} {obj!r};".encode())


def checkpoint_sha256(checkpoint: dict) -> str:
    """Hex SHA-256 of a checkpoint's contents (all but its own ``"sha256"`` entry): the bytes
    of every tensor, and every key, number and string, in order. A flipped bit anywhere in
    a tensor changes it, which the zip container of ``torch.save`` does not notice."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in checkpoint.items() if k != "sha256"})
    return digest.hexdigest()


def write_checkpoint(checkpoint: dict, path: str | os.PathLike) -> None:
    """``torch.save`` the dict with its ``"sha256"`` added, through a temporary file renamed
    into place, so a crash while saving never leaves half a checkpoint."""
    if not isinstance(checkpoint, dict):
        raise TypeError(f"checkpoint must be a dict, got {type(checkpoint).__name__}")
    checkpoint = {**checkpoint, "sha256": checkpoint_sha256(checkpoint)}
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> dict:
    """The dict `write_checkpoint` saved at ``path``, with every one of ``keys``; or a
    `ValueError` that says what the file is instead: unreadable (truncated, or not written by
    ``torch.save``), a plain state dict, a dict without those keys, or damaged (its contents
    no longer match the SHA-256 saved with them). A file without a checksum (from an older
    lmlib) loads with a warning."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 (zip, pickle and EOF errors all mean unreadable)
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        reason = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(
            f"{path} ({size:,} bytes) is not a readable checkpoint: it may be "
            f"truncated, or not written by torch.save ({type(err).__name__}: "
            f"{reason}). Expected a file of Trainer.save_checkpoint."
        ) from err
    if (
        isinstance(checkpoint, dict)
        and checkpoint
        and keys
        and all(torch.is_tensor(v) for v in checkpoint.values())
    ):
        raise ValueError(
            f"{path} holds a plain state dict ({len(checkpoint)} tensors such as "
            f"{next(iter(checkpoint))!r}), not a checkpoint of a run: load it "
            f"with model.load_state_dict(torch.load(path))"
        )
    if not isinstance(checkpoint, dict) or not set(keys) <= checkpoint.keys():
        found = (
            sorted(map(str, checkpoint))[:8]
            if isinstance(checkpoint, dict)
            else (type(checkpoint).__name__)
        )
        raise ValueError(
            f"{path} is not a checkpoint of a run: it holds {found}, a "
            f"checkpoint has {', '.join(keys)}"
        )
    if "sha256" not in checkpoint:
        warnings.warn(
            f"{path} has no checksum (an older lmlib wrote it): loaded without a check for damage",
            stacklevel=2,
        )
    elif (actual := checkpoint_sha256(checkpoint)) != checkpoint["sha256"]:
        raise ValueError(
            f"{path} is damaged: its contents do not match the SHA-256 saved "
            f"with them, so it was not loaded.\n  expected: "
            f"{checkpoint['sha256']}\n  actual:   {actual}\n  Use another copy, "
            f"or an earlier checkpoint of the run."
        )
    return checkpoint  # fmt: skip


def check_model_fits(state_dict: dict, model: torch.nn.Module, path="the checkpoint") -> None:
    """Raise a `ValueError` naming what differs unless ``state_dict`` has exactly ``model``'s
    parameter and buffer names, with the same shapes (what ``load_state_dict`` would check
    too, but only after it had already copied some tensors)."""
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in state_dict.items() if torch.is_tensor(v)}
    if ours != theirs or len(theirs) != len(state_dict):
        missing, extra = sorted(ours.keys() - theirs), sorted(state_dict.keys() - ours.keys())
        shapes = {k: (theirs[k], ours[k]) for k in ours.keys() & theirs if ours[k] != theirs[k]}
        raise ValueError(f"{path} holds another model: missing {missing[:5]}, unexpected "
                         f"{extra[:5]}, shapes (checkpoint, model) "
                         f"{dict(list(shapes.items())[:5])}")  # fmt: skip


def _settings(group: dict) -> list[str]:
    # The numeric settings tell optimizers apart (Adam's betas and eps, SGD's momentum);
    # boolean flags (foreach, fused, ...) come and go with PyTorch versions.
    return sorted(k for k, v in group.items() if k != "params" and not isinstance(v, bool)
                  and isinstance(v, (int, float, tuple, list)))  # fmt: skip


def check_optimizer_fits(state_dict: dict, optimizer: torch.optim.Optimizer,
                         path="the checkpoint") -> None:  # fmt: skip
    """Raise a `ValueError` unless ``state_dict`` is a state of an optimizer like
    ``optimizer``: the same groups of the same sizes and settings, state of the same shapes."""
    groups, saved = optimizer.param_groups, state_dict.get("param_groups", [])
    layout = [(len(g["params"]), _settings(g)) for g in groups]
    saved_layout = [(len(g["params"]), _settings(g)) for g in saved]
    if layout != saved_layout:
        raise ValueError(f"{path} holds another optimizer: (parameters, settings) per group "
                         f"{saved_layout}, this one's {layout}")  # fmt: skip
    state = state_dict.get("state", {})
    for group, saved_group in zip(groups, saved):
        for p, i in zip(group["params"], saved_group["params"]):
            for name, t in state.get(i, {}).items():
                if torch.is_tensor(t) and t.dim() and t.shape != p.shape:
                    raise ValueError(f"{path}: optimizer state {name!r} of parameter {i} has "
                                     f"shape {tuple(t.shape)}, the parameter "
                                     f"{tuple(p.shape)}")  # fmt: skip
