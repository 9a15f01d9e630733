"""Training a language model: a run's config and the training loop (Chapter 5).

The loop puts together the batches of `lmlib.batches` and the AdamW and learning-rate
schedule of `lmlib.optim`:

- `TrainConfig`: every number of a run, apart from the model and the data.
- `Trainer`: the loop, with gradient accumulation, clipping, mixed precision on CUDA,
  periodic evaluation, a `History` to plot, and checkpoints that resume bit for bit. It
  trains on a token sequence, or on any loss a ``loss_fn`` computes: fine-tuning
  (`lmlib.finetune`) uses the same loop. Under ``torchrun`` the same loop trains on
  several processes, with DDP or FSDP (`lmlib.distributed`).

Shape legend: B batch, T time (``block_size``), V vocabulary size.

>>> from lmlib.model import GPT, GPTConfig
>>> _ = torch.manual_seed(0)
>>> data = torch.tensor([0, 1, 2, 3] * 50)  # "0123" over and over: easy to learn
>>> model = GPT(GPTConfig(block_size=8, vocab_size=4, n_layers=1, n_heads=2, d_model=16))
>>> cfg = TrainConfig(max_iters=40, batch_size=4, block_size=8, learning_rate=1e-2,
...                   min_lr=1e-3, warmup_iters=5, eval_interval=0, progress=False, device="cpu")
>>> history = Trainer(model, data, cfg=cfg).train()
>>> history.train_loss[0] > 1.2 > 0.1 > history.train_loss[-1]  # from about ln 4 = 1.39
True
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from lmlib import distributed
from lmlib.batches import check_tokens, estimate_loss, get_batch
from lmlib.checkpoints import (
    check_model_fits,
    check_optimizer_fits,
    read_checkpoint,
    write_checkpoint,
)
from lmlib.memory import checkpoint_blocks
from lmlib.optim import configure_optimizer, lr_at, row_major_trainable
from lmlib.runtime import check_int, check_number, get_device, progress_bar


@dataclass
class TrainConfig:
    """A run, apart from the model and data; the defaults are nanoGPT's Shakespeare on a CPU."""

    # batches of token data (a loss_fn draws its own)
    batch_size: int = 12  # sequences per micro-batch
    block_size: int = 64  # tokens per sequence; at most the model's own block_size
    grad_accum_steps: int = 1  # micro-batches per step: the batch is batch_size * this
    # schedule (see lr_at): linear warm-up to learning_rate, then decay to min_lr
    max_iters: int = 2000  # optimizer steps
    learning_rate: float = 1e-3  # peak, reached at the end of the warm-up
    min_lr: float = 1e-4  # the floor after lr_decay_iters, about learning_rate / 10
    warmup_iters: int = 100  # Adam's moment estimates are poor at first: start gently
    lr_decay_iters: int | None = None  # where the decay reaches min_lr; None: max_iters
    decay: str = "cosine"  # "cosine", or "linear" (a straight line down to min_lr)
    # optimizer (see configure_optimizer)
    weight_decay: float = 0.1  # AdamW's decoupled decay, on matrices and embeddings only
    betas: tuple[float, float] = (0.9, 0.999)  # PyTorch's; 0.99 and 0.95 did worse on Shakespeare
    grad_clip: float | None = 1.0  # largest global gradient norm; None: no clipping
    # evaluation
    eval_interval: int = 250  # estimate at step 0, every this many steps, at the end; 0: end
    eval_iters: int = 20  # batches per split in each estimate (the same batches every time)
    # runtime
    seed: int = 1337  # seeds the batch sampler; the model's initialization is the caller's
    device: str | None = None  # None: lmlib.get_device(), i.e. CUDA, then MPS, then CPU
    mixed_precision: str = "auto"  # "bf16" (CUDA, CPU), "fp16" (CUDA), "off"; "auto": CUDA only
    compile: bool = False  # torch.compile the model: slow to start, pays off on long runs
    activation_checkpointing: bool = False  # recompute each block in backward: less memory
    # several processes (under torchrun; see lmlib.distributed)
    parallel: str = "ddp"  # "ddp": a whole model per process; "fsdp": each keeps a shard
    dist_timeout: float = 300.0  # seconds to wait for the other processes, then an error
    # checkpoints and progress
    checkpoint_path: str | None = None  # where to save; None: only explicit save_checkpoint
    checkpoint_interval: int = 0  # save every this many steps, and when train() returns
    log_interval: int = 10  # refresh the progress bar's loss and lr every this many steps
    progress: bool = True  # show a tqdm progress bar

    def __post_init__(self):
        for name in ("batch_size", "block_size", "grad_accum_steps", "log_interval"):
            check_int(getattr(self, name), name, low=1)
        for name in "max_iters warmup_iters eval_interval eval_iters checkpoint_interval".split():
            check_int(getattr(self, name), name, low=0)
        if self.lr_decay_iters is not None:
            check_int(self.lr_decay_iters, "lr_decay_iters", low=0)
        check_int(self.seed, "seed", low=0)
        check_number(self.learning_rate, "learning_rate", low=0)  # inf would train to nan
        check_number(self.min_lr, "min_lr", low=0)
        if not self.min_lr <= self.learning_rate:
            raise ValueError(
                f"need 0 <= min_lr <= learning_rate, got {self.min_lr} and {self.learning_rate}"
            )
        if self.warmup_iters > self.decay_iters:
            raise ValueError(
                f"warmup_iters {self.warmup_iters} is past the end of the decay at step "
                f"{self.decay_iters} (lr_decay_iters, or max_iters when that is None)"
            )
        check_number(self.weight_decay, "weight_decay", low=0)
        if not (isinstance(self.betas, (tuple, list)) and len(self.betas) == 2):
            raise TypeError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        for i, beta in enumerate(self.betas):
            check_number(beta, f"betas[{i}]", 0, 1)
            if beta == 1:
                raise ValueError(f"betas[{i}] must be below 1 (Adam divides by 1 - beta)")
        if self.grad_clip is not None:  # a negative clip would turn the step around
            check_number(self.grad_clip, "grad_clip", low=0, open_low=True)
        if self.decay not in ("cosine", "linear"):
            raise ValueError(f"decay must be 'cosine' or 'linear', got {self.decay!r}")
        if self.mixed_precision not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(
                f"mixed_precision must be 'auto', 'bf16', 'fp16' or 'off', "
                f"got {self.mixed_precision!r}"
            )
        if self.device is not None and not isinstance(self.device, str):
            raise TypeError(f"device must be None or a str such as 'cpu', got {self.device!r}")
        for name in ("compile", "progress", "activation_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        path = self.checkpoint_path
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"checkpoint_path must be None or a path, got {path!r}")
        if self.parallel not in distributed.PARALLEL:
            raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {self.parallel!r}")
        check_number(self.dist_timeout, "dist_timeout", low=0, open_low=True)

    @property
    def decay_iters(self) -> int:
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters


@dataclass
class History:
    """What a run recorded, as plain lists for plotting; index i of a list is step i."""

    train_loss: list[float] = field(default_factory=list)  # mean micro-batch loss per step
    lr: list[float] = field(default_factory=list)  # the learning rate of each step
    eval_iter: list[int] = field(default_factory=list)  # steps done when estimate_loss ran
    eval_loss: dict[str, list[float]] = field(default_factory=dict)  # split -> per eval_iter


# Config fields that do not change the numbers a step computes, so a run may resume with
# other values (more steps, another device, a different progress bar); the rest must match.
_FREE_TO_CHANGE = set(
    "max_iters eval_interval eval_iters device compile checkpoint_path checkpoint_interval "
    "log_interval progress activation_checkpointing parallel dist_timeout".split()
)


def _fingerprint(config: dict) -> dict:
    config = {**asdict(TrainConfig()), **config}  # a field added since: its default
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    if config["lr_decay_iters"] is None:  # the schedule really ends at max_iters
        config["lr_decay_iters"] = config["max_iters"]
    return {k: v for k, v in config.items() if k not in _FREE_TO_CHANGE}


# What save_checkpoint writes (and a sha256 of it all); load_checkpoint needs every one.
_CHECKPOINT_KEYS = ("model", "optimizer", "scaler", "iter", "history", "config", "generator",
                    "torch_rng", "cuda_rng")  # fmt: skip

LossFn = Callable[[nn.Module, torch.Generator], torch.Tensor]  # (model, generator) -> loss


class Trainer:
    """Trains ``model`` on ``train_data`` (a 1-D tensor of token ids) as ``cfg`` says.

    ``train()`` runs until ``cfg.max_iters``, or ``iters`` more steps, and can be called
    again to go on: interrupting a notebook cell and re-running it continues the run.
    ``save_checkpoint`` / ``load_checkpoint`` do the same across processes; a resumed run
    computes exactly the losses the uninterrupted run would have (bit for bit on a CPU).

    The model must map ``(idx, targets)`` to an object with a ``.loss``, as `lmlib.model`'s
    models do. Dropout draws from torch's global generator: seed it (``seed_everything``)
    before building the model for a repeatable run.

    Any other training task passes ``loss_fn(model, generator)`` instead of ``train_data``:
    it draws one micro-batch, with ``generator`` for a resumable run, and returns the
    model's mean loss on it. Evaluation needs token data (``val_data``, or none at all).
    ``optimizer`` replaces `configure_optimizer`'s AdamW; the schedule still sets its
    learning rate at every step.

    >>> model = nn.Linear(1, 1, bias=False)  # learn y = 3 x from random x
    >>> def loss_fn(model, generator):
    ...     x = torch.randn(8, 1, generator=generator)
    ...     return ((model(x) - 3 * x) ** 2).mean()
    >>> cfg = TrainConfig(max_iters=100, learning_rate=0.1, min_lr=0.01, warmup_iters=0,
    ...                   weight_decay=0.0, eval_iters=0, progress=False, device="cpu")
    >>> history = Trainer(model, cfg=cfg, loss_fn=loss_fn).train()
    >>> round(model.weight.item(), 2)
    3.0
    """

    def __init__(self, model: nn.Module, train_data=None, val_data=None,
                 cfg: TrainConfig | None = None, *, loss_fn: LossFn | None = None,
                 optimizer: torch.optim.Optimizer | None = None):  # fmt: skip
        self.cfg = cfg = cfg if cfg is not None else TrainConfig()
        kinds = (("cfg", cfg, TrainConfig), ("model", model, nn.Module),
                 ("optimizer", optimizer, (torch.optim.Optimizer, type(None))))  # fmt: skip
        for name, value, kind in kinds:
            if not isinstance(value, kind):
                need = getattr(kind, "__name__", "torch.optim.Optimizer")
                raise TypeError(f"{name} must be a {need}, got {type(value).__name__}")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be a function (model, generator) -> loss, got "
                            f"{type(loss_fn).__name__}")  # fmt: skip
        if (train_data is None) == (loss_fn is None):
            raise ValueError("pass exactly one of train_data (token ids) and loss_fn")
        splits = {"train": train_data, "val": val_data}
        self.splits = {name: data for name, data in splits.items() if data is not None}
        for name, data in self.splits.items():
            check_tokens(data, cfg.block_size, f"{name}_data")
        model_block = getattr(getattr(model, "config", None), "block_size", None)
        if self.splits and model_block is not None and cfg.block_size > model_block:
            raise ValueError(
                f"cfg.block_size {cfg.block_size} is longer than the model's "
                f"block_size {model_block}"
            )
        self.loss_fn = loss_fn if loss_fn is not None else self._token_loss
        # Under torchrun: join the other processes, and use this process's GPU.
        self.device = distributed.setup(get_device(cfg.device), cfg.dist_timeout)
        self.model = model.to(self.device)
        if optimizer is None or not optimizer.state:  # before AdamW's state takes the layout
            row_major_trainable(self.model)
        if cfg.activation_checkpointing:
            checkpoint_blocks(self.model)
        if optimizer is not None and cfg.parallel == "fsdp" and distributed.is_distributed():
            raise ValueError("parallel='fsdp' replaces the model's parameters by shards: let "
                             "the trainer build the optimizer (pass optimizer=None)")  # fmt: skip
        # DDP wraps the model; FSDP shards it in place, so before the optimizer sees it.
        parallel = distributed.wrap(self.model, cfg.parallel, self.device)
        if optimizer is None:  # after .to(): the fused kernel needs the final device
            optimizer = configure_optimizer(self.model, cfg)
        self.optimizer = optimizer
        self.amp_dtype = self._amp_dtype()
        # fp16's narrow range lets small gradients underflow to zero; the scaler multiplies
        # the loss up before backward and divides the gradients back down before the step.
        # bf16 has float32's range and needs none, so the scaler is off (a no-op) then.
        fp16 = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
        # What step() calls: the model itself, or a compiled version sharing its weights.
        self.step_model = torch.compile(parallel) if cfg.compile else parallel
        self.generator = torch.Generator().manual_seed(cfg.seed)  # the training batches
        self.iter = 0  # optimizer steps done
        self.history = History()
        self._pending: list[torch.Tensor] = []  # losses not yet copied into history

    def _amp_dtype(self) -> torch.dtype | None:
        choice = self.cfg.mixed_precision
        if choice == "off":
            return None
        if choice == "bf16" and self.device.type == "cpu":
            return torch.bfloat16  # CPU autocast: bfloat16 only, with float32's range
        if self.device.type != "cuda":
            if choice != "auto":
                warnings.warn(
                    f"mixed_precision={choice!r} is for CUDA; training on "
                    f"{self.device.type} in float32",
                    stacklevel=3,
                )
            return None
        if choice == "auto":
            # bf16 is native from compute capability 8 (Ampere) on; older GPUs emulate it.
            native_bf16 = torch.cuda.get_device_capability(self.device)[0] >= 8
            return torch.bfloat16 if native_bf16 else torch.float16
        return torch.bfloat16 if choice == "bf16" else torch.float16

    def _token_loss(self, model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        """The next-token loss on a batch of random windows of the training tokens."""
        cfg = self.cfg
        x, y = get_batch(self.splits["train"], cfg.batch_size, cfg.block_size, generator,
                         self.device)  # fmt: skip
        # Under torchrun every process drew the same global batch: each keeps its rows.
        return model(distributed.shard(x), distributed.shard(y)).loss

    def step(self) -> torch.Tensor:
        """One optimizer step over ``grad_accum_steps`` micro-batches; returns the mean loss."""
        cfg = self.cfg
        lr = lr_at(self.iter, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum_steps):
            amp = self.amp_dtype is not None  # mixed precision (CUDA only; see _amp_dtype)
            # Several processes average their gradients after the last micro-batch only.
            last = micro == cfg.grad_accum_steps - 1
            with distributed.gradient_sync(self.step_model, last):
                with torch.autocast(self.device.type, self.amp_dtype, enabled=amp):
                    # Gradients add up over backward calls; dividing each loss by the number
                    # of micro-batches makes the sum a mean, as for one batch of their size.
                    loss = self.loss_fn(self.step_model, self.generator) / cfg.grad_accum_steps
                self.scaler.scale(loss).backward()
            total += loss.detach().float()
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)  # with fp16, skipped if a gradient overflowed
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)  # frees the gradients until next backward
        self.iter += 1
        self.history.lr.append(lr)
        self._pending.append(total)
        return total

    def _flush(self) -> None:
        # .item() waits for the GPU; collecting losses and copying them in one go every
        # log_interval steps lets the GPU run ahead of Python in between.
        if self._pending:
            first = len(self.history.train_loss)
            # The mean over processes (each saw its share of the batch); alone, the losses.
            self.history.train_loss += distributed.average(torch.stack(self._pending)).tolist()
            self._pending.clear()
            bad = [(first + i, x) for i, x in enumerate(self.history.train_loss[first:])
                   if not math.isfinite(x)]  # fmt: skip
            if bad:  # every later step would only spread the nan through the weights
                step, loss = bad[0]
                raise FloatingPointError(
                    f"the training loss is {loss} at step {step}: the run diverged. Lower "
                    f"learning_rate (now {self.cfg.learning_rate}) or clip the gradients "
                    f"(grad_clip, now {self.cfg.grad_clip})"
                )

    def evaluate(self) -> dict[str, float]:
        """`estimate_loss` on every split, recorded in the history at the current step."""
        cfg = self.cfg
        if not self.splits:
            raise ValueError("nothing to evaluate: this trainer was given no token data")
        # The uncompiled model: a compiled one would compile again for eval mode and no_grad.
        losses = estimate_loss(
            self.model,
            self.splits,
            cfg.eval_iters,
            cfg.batch_size,
            cfg.block_size,
            cfg.seed,
            self.amp_dtype,
        )
        self.history.eval_iter.append(self.iter)
        for name, loss in losses.items():
            self.history.eval_loss.setdefault(name, []).append(loss)
        return losses

    def train(self, iters: int | None = None) -> History:
        """Run until ``cfg.max_iters`` steps are done, or at most ``iters`` more; the history."""
        cfg = self.cfg
        if iters is not None:
            check_int(iters, "iters", low=0)
        stop = cfg.max_iters if iters is None else min(cfg.max_iters, self.iter + iters)
        shown = cfg.progress and distributed.is_main()  # one bar, not one per process
        bar = progress_bar(
            total=stop, initial=self.iter, desc="train", unit="steps", disable=not shown
        )
        self.model.train()  # dropout on, whatever mode the model came in
        evaluating = bool(cfg.eval_iters and self.splits)
        if self.iter == 0 and not self.history.eval_iter and cfg.eval_interval and evaluating:
            self._report(bar, self.evaluate())  # the untrained model: about ln V
        try:
            while self.iter < stop:
                self.step()
                bar.update()
                if self.iter % cfg.log_interval == 0 or self.iter == stop:
                    self._flush()
                    loss, lr = self.history.train_loss[-1], self.history.lr[-1]
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
                due = cfg.eval_interval and self.iter % cfg.eval_interval == 0
                if evaluating and (due or self.iter == cfg.max_iters):
                    self._report(bar, self.evaluate())
                every = cfg.checkpoint_interval
                if cfg.checkpoint_path and every and self.iter % every == 0 and self.iter < stop:
                    self.save_checkpoint()
        except Exception as err:
            # Another process died or hangs: say so, instead of a bare socket error.
            lost = distributed.is_distributed() and distributed.peer_failure(err, cfg.dist_timeout)
            if not lost:
                raise
            self._pending.clear()  # the final flush must not wait for the lost process too
            raise lost from err
        finally:
            self._flush()
            bar.close()
        if cfg.checkpoint_path:
            self.save_checkpoint()
        return self.history

    def _report(self, bar, losses: dict[str, float]) -> None:
        if self.cfg.progress and distributed.is_main():
            bar.write(f"step {self.iter}: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> None:
        """Everything a resumed run needs to continue exactly where this one is, with a
        SHA-256 of it all, so that `load_checkpoint` can tell a damaged file.

        Under torchrun every process calls it and rank 0 writes the file: whole tensors,
        as one process saves them, so a run may resume with any number of processes."""
        path = path if path is not None else self.cfg.checkpoint_path
        if path is None:
            raise ValueError("no path given and cfg.checkpoint_path is None")
        self._flush()
        model_state, optimizer_state = distributed.full_state(self.model, self.optimizer)
        checkpoint = {
            "model": model_state,
            "optimizer": optimizer_state,  # Adam's moments and step counts
            "scaler": self.scaler.state_dict(),
            "iter": self.iter,
            "history": asdict(self.history),
            "config": asdict(self.cfg),
            # The batch sampler and torch's global generator (dropout), so that the next
            # batches and dropout masks are the ones the uninterrupted run would draw.
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
        }
        if distributed.is_main():
            write_checkpoint(checkpoint, path)  # with its SHA-256, atomically
        distributed.barrier()  # no process goes on (and reads it) before it is complete

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Continue the run saved at ``path``; its config must match this trainer's.

        Everything is checked before anything is loaded (the file, its checksum, the config,
        the model's names and shapes, the optimizer's), so a refused checkpoint leaves this
        trainer and its model exactly as they were.
        """
        checkpoint = read_checkpoint(path, keys=_CHECKPOINT_KEYS)
        ours, theirs = _fingerprint(asdict(self.cfg)), _fingerprint(checkpoint["config"])
        if ours != theirs:
            diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
            raise ValueError(f"checkpoint {path} has another config; (checkpoint, ours): {diff}")
        self._check_fits(checkpoint, path)
        try:
            history = History(**checkpoint["history"])
        except TypeError as err:
            raise ValueError(f"checkpoint {path} has a history lmlib cannot read: {err}") from err
        # Checked: from here on nothing can fail half-way.
        distributed.load_full_state(self.model, self.optimizer, checkpoint["model"],
                                    checkpoint["optimizer"])  # fmt: skip
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.iter = checkpoint["iter"]
        self.history = history
        self._pending.clear()
        self.generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if checkpoint["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])

    def _check_fits(self, checkpoint: dict, path) -> None:
        """Raise unless the checkpoint's model, optimizer and generators fit this trainer."""
        check_model_fits(checkpoint["model"], self.model, f"checkpoint {path}")
        check_optimizer_fits(checkpoint["optimizer"], self.optimizer, f"checkpoint {path}")
        if self.scaler.is_enabled() and not checkpoint["scaler"]:
            raise ValueError(f"checkpoint {path} was saved without fp16 loss scaling, which "
                             f"this trainer uses: resume with mixed_precision 'off' or "
                             f"'bf16'")  # fmt: skip
        rngs = (("generator", self.generator.get_state()), ("torch_rng", torch.get_rng_state()))
        for name, now in rngs:
            if not torch.is_tensor(checkpoint[name]) or checkpoint[name].shape != now.shape:
                raise ValueError(f"checkpoint {path}: {name} is not a random generator state")
        check_int(checkpoint["iter"], f"checkpoint {path}: iter", low=0)
