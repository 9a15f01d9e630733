"""Training on several processes with torch.distributed: DDP and FSDP (Chapter 5).

``torchrun`` starts one process per device and tells each its rank r (0 .. N-1) and the
world size N in environment variables. `lmlib.train.Trainer` reads them through this module
and otherwise runs unchanged, so the script a reader runs on a laptop is the one a cluster
runs:

- `setup`: join the process group (gloo on the CPU, NCCL on CUDA) with a timeout, and
  choose this process's device (``cuda:LOCAL_RANK`` on a machine with several GPUs).
- `shard`: this process's rows of a batch. Every process draws the same global batch from
  the same seeded generator and keeps its share: the shares are disjoint, and the sampler's
  state is the same in every process, so a checkpoint does not depend on N.
- `wrap`: DDP (each process holds the whole model; the backward pass averages gradients
  with an all-reduce) or FSDP (``fully_shard``: each process keeps 1/N of the weights,
  gradients and optimizer state, gathering a layer's weights only while it runs).
- `gradient_sync`, `average`, `barrier`: the collectives the trainer calls.
- `full_state`, `load_full_state`: state dicts in the single-process format, whatever N.
- `peer_failure`: the error to raise when another process died or stopped answering.
- `free_port`, `torchrun_command`: launching N processes on this machine (127.0.0.1).

Alone (no ``torchrun``), every function is the identity or a no-op:

>>> world_size(), rank(), is_main()
(1, 0, True)
>>> shard(torch.arange(6))  # one process keeps the whole batch
tensor([0, 1, 2, 3, 4, 5])
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
from contextlib import nullcontext
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from lmlib.runtime import check_int, check_number

PARALLEL = ("ddp", "fsdp")


def is_distributed() -> bool:
    """True inside a process group (started by ``torchrun``, joined by `setup`)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """How many processes train together (1 alone)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's number, 0 .. world_size() - 1 (0 alone)."""
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """Rank 0: the process that prints, shows the progress bar and writes checkpoints."""
    return rank() == 0


def setup(device: torch.device, timeout: float = 300.0) -> torch.device:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment)
    unless one exists already; return the device this process should train on.

    A collective waits at most ``timeout`` seconds for the other processes; then it fails
    instead of hanging for ever when one of them died or hangs.
    """
    check_number(timeout, "timeout", low=0, open_low=True)
    device = torch.device(device)
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if device.type == "cuda" and device.index is None and (n > 1 or is_distributed()):
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if n > 1 and not is_distributed():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend,
            timeout=timedelta(seconds=timeout),
            device_id=device if device.type == "cuda" else None,
        )
        atexit.register(shutdown)  # a script that forgets to leave the group still exits
    return device


def shutdown() -> None:
    """Leave the process group (at the end of a script; `setup` registers it at exit)."""
    if is_distributed():
        dist.destroy_process_group()


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This process's rows of a global batch: rows r B / N to (r + 1) B / N - 1.

    Process r of N keeps the r-th of N equal slices, so the slices are disjoint and
    together they are the batch one process would draw.
    """
    n, r = world_size(), rank()
    if n == 1:
        return batch
    if batch.size(0) % n:
        raise ValueError(
            f"a batch of {batch.size(0)} rows does not divide among {n} "
            f"processes: make batch_size a multiple of the world size"
        )
    rows = batch.size(0) // n
    return batch[r * rows : (r + 1) * rows]


def is_sharded(model: nn.Module) -> bool:
    """True for a model that ``fully_shard`` has sharded (FSDP)."""
    from torch.distributed.fsdp import FSDPModule  # torch >= 2.6; only needed with FSDP

    return isinstance(model, FSDPModule)


def wrap(model: nn.Module, parallel: str, device: torch.device) -> nn.Module:
    """What a training step should call: ``model`` alone; ``DDP(model)``; or, with
    ``parallel="fsdp"``, ``model`` itself, sharded in place (each `lmlib.model.Block`,
    then the rest), so that its parameters become shards (DTensors).

    Both start every process from rank 0's weights, so the model may be initialized with
    a different seed in each process.
    """
    if parallel not in PARALLEL:
        raise ValueError(f"parallel must be one of {PARALLEL}, got {parallel!r}")
    if not is_distributed():
        return model
    if parallel == "ddp":
        return DistributedDataParallel(
            model,
            device_ids=[device.index]
            if device.index is not None and device.type == "cuda"
            else None,
        )
    from torch.distributed.fsdp import fully_shard

    from lmlib.model import Block  # lmlib.model does not import this module

    with torch.no_grad():
        for tensor in model.state_dict().values():  # DDP does this broadcast by itself
            dist.broadcast(tensor, src=0)
    # One unit per block: a block's weights are gathered just before it runs, then freed.
    for block in [m for m in model.modules() if isinstance(m, Block)]:
        fully_shard(block)
    fully_shard(model)
    return model


def gradient_sync(model: nn.Module, enabled: bool):
    """A context in which the backward pass averages gradients across processes only when
    ``enabled``: with gradient accumulation, only the last micro-batch's needs to."""
    if isinstance(model, DistributedDataParallel) and not enabled:
        return model.no_sync()
    if is_distributed() and is_sharded(model):
        model.set_requires_gradient_sync(enabled)
    return nullcontext()


def average(tensor: torch.Tensor) -> torch.Tensor:
    """The mean over processes of a tensor each holds; alone, ``tensor`` itself."""
    if not is_distributed():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)  # sum: gloo has no mean
    return total / world_size()


def barrier() -> None:
    """Wait until every process is here (a no-op alone)."""
    if is_distributed():
        dist.barrier()


def _numbered(optim_state: dict) -> dict:
    # get_state_dict names parameters by their module path; a one-process optimizer
    # numbers them 0, 1, ... in the order of its parameter groups. Same order, other keys.
    ids: dict[str, int] = {}
    for group in optim_state.get("param_groups", []):
        for name in group["params"]:
            ids[name] = len(ids)
    return {
        "state": {ids[name]: s for name, s in optim_state.get("state", {}).items()},
        "param_groups": [
            {**g, "params": [ids[n] for n in g["params"]]}
            for g in optim_state.get("param_groups", [])
        ],
    }


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(model, optimizer) state dicts as one process has them: whole tensors, parameters
    numbered 0, 1, ... So a checkpoint is the same file whatever N wrote it.

    With FSDP every process must call it (the shards are gathered); rank 0 gets whole
    tensors on the CPU, the others empty dicts.
    """
    if not is_sharded(model):
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state, optim_state = get_state_dict(model, optimizer, options=options)
    return model_state, _numbered(optim_state)


def load_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optim_state: dict
) -> None:
    """Load state dicts in `full_state`'s format; with FSDP each process keeps its shard."""
    if not is_sharded(model):
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    names = {p: name for name, p in model.named_parameters()}  # a tied weight: its first name
    order = [names[p] for group in optimizer.param_groups for p in group["params"]]
    by_name = {
        "state": {order[i]: s for i, s in optim_state["state"].items()},
        "param_groups": [
            {**g, "params": [order[i] for i in g["params"]]} for g in optim_state["param_groups"]
        ],
    }
    set_state_dict(
        model,
        optimizer,
        model_state_dict=model_state,
        optim_state_dict=by_name,
        options=StateDictOptions(full_state_dict=True),
    )


# What gloo and NCCL say when the other end of a collective is gone or silent.
_LOST = (
    "connection closed by peer",
    "timed out",
    "connection reset",
    "broken pipe",
    "nccl",
    "gloo",
    "socket",
    "processgroup",
)


def peer_failure(err: BaseException, timeout: float) -> RuntimeError | None:
    """The error to raise instead of ``err`` when it says that another process is gone (it
    died, or did not answer within ``timeout`` seconds); None for any other error.

    >>> peer_failure(ValueError("bad batch"), 30) is None
    True
    """
    text = str(err).lower()
    if not (isinstance(err, getattr(dist, "DistError", ())) or any(w in text for w in _LOST)):
        return None
    first = (str(err).strip().splitlines() or [""])[0][:300]
    return RuntimeError(
        f"process {rank()} of {world_size()}: another process stopped answering (it died, "
        f"or hung for more than {timeout:g} s, the trainer's dist_timeout). Its own error, "
        f"or torchrun's summary, says why. ({type(err).__name__}: {first})"
    )


# --------------------------------------------------------------------------------------------
# Launching on one machine


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(script: str, nproc: int, *args: str, port: int | None = None) -> list[str]:
    """The ``torchrun`` command line that runs ``script`` in ``nproc`` processes on this
    machine, talking over 127.0.0.1 only.

    >>> command = torchrun_command("train.py", 2, "--steps", "10", port=29500)
    >>> command[3:6]
    ['--nproc_per_node=2', '--master_addr=127.0.0.1', '--master_port=29500']
    >>> command[6:]
    ['train.py', '--steps', '10']
    """
    check_int(nproc, "nproc", low=1)
    port = free_port() if port is None else check_int(port, "port", 1, 65535)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        script,
        *args,
    ]
