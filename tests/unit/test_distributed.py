"""lmlib.train under torchrun: DDP and FSDP against one process, checkpoints that move between
world sizes, and a process that dies or hangs.

The multi-process tests start real processes (``torchrun``, gloo, CPU, 127.0.0.1 only) and
are marked slow: on a 2-core CPU each launch takes 10-30 s, most of it importing torch.
One launch runs every two-process scenario (`WORKER`); the tests then compare its results
with runs in this process.

Why 2 processes on batch B equal 1 process with 2 micro-batches of B / 2 *bit for bit*:
each process's loss is the mean over its B / 2 rows; DDP divides each process's gradient by
2 and sums the two; gradient accumulation divides each micro-batch's loss by 2 and sums the
two gradients. Halving is exact in floating point and commutes with every (linear) step of
the backward pass, and a sum of two numbers does not depend on their order: the same bits.
One micro-batch of B rows instead sums all B rows' gradients in another order, so it agrees
to rounding only: about 1e-7 relative in each gradient, which Adam can turn into up to a
learning rate's worth of update where a gradient is near zero (it divides by its running
RMS). Measured here: 9e-6 after 6 steps at learning rate 1e-2; the tests allow 5e-5.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from lmlib import distributed
from lmlib.model import GPT, GPTConfig
from lmlib.train import TrainConfig, Trainer

V, T = 11, 8

# What every process of the two-process launch runs. It writes out.pt (rank 0) with the
# history and whole weights of each scenario.
WORKER = textwrap.dedent("""
    import sys
    import torch
    from lmlib import distributed
    from lmlib.model import GPT, GPTConfig
    from lmlib.train import TrainConfig, Trainer

    folder = sys.argv[1]
    torch.set_num_threads(1)
    data = torch.randint(11, (400,), generator=torch.Generator().manual_seed(0))
    val = torch.randint(11, (200,), generator=torch.Generator().manual_seed(1))

    def trainer(parallel, seed):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layers=2, n_heads=2, d_model=16))
        cfg = TrainConfig(max_iters=6, batch_size=8, block_size=8, warmup_iters=2,
                          learning_rate=1e-2, min_lr=1e-3, grad_clip=0.5, eval_interval=3,
                          eval_iters=2, progress=False, device="cpu", parallel=parallel,
                          dist_timeout=60.0)
        return Trainer(model, data, val, cfg)

    def result(t):
        weights, _ = distributed.full_state(t.model, t.optimizer)
        return {"history": t.history, "model": weights}

    out = {}
    for parallel in ("ddp", "fsdp"):
        # Another initialization in each process: both wrappers start from rank 0's.
        t = trainer(parallel, seed=10 + distributed.rank())
        t.train()
        out[parallel] = result(t)
        t = trainer(parallel, seed=10)
        t.train(iters=3)  # stopped half-way, saved by rank 0 ...
        t.save_checkpoint(f"{folder}/{parallel}-2proc-step3.pt")
        t = trainer(parallel, seed=99)  # ... and resumed in a fresh trainer
        t.load_checkpoint(f"{folder}/{parallel}-2proc-step3.pt")
        t.train()
        out[f"{parallel} resumed"] = result(t)
        t = trainer(parallel, seed=99)  # a checkpoint one process saved
        t.load_checkpoint(f"{folder}/1proc-step3.pt")
        t.train()
        out[f"{parallel} from 1 process"] = result(t)
    if distributed.is_main():
        torch.save(out, f"{folder}/out.pt")
""")


def data():
    return torch.randint(V, (400,), generator=torch.Generator().manual_seed(0))


def val():
    return torch.randint(V, (200,), generator=torch.Generator().manual_seed(1))


def trainer(seed=10, **overrides):
    """One process: the worker's trainer, with any config changed."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=T, vocab_size=V, n_layers=2, n_heads=2, d_model=16))
    base = dict(max_iters=6, batch_size=8, block_size=T, warmup_iters=2, learning_rate=1e-2,
                min_lr=1e-3, grad_clip=0.5, eval_interval=3, eval_iters=2, progress=False,
                device="cpu")  # fmt: skip
    return Trainer(model, data(), val(), TrainConfig(**{**base, **overrides}))


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """The one-process references, and the two-process scenarios of WORKER, run once."""
    folder = tmp_path_factory.mktemp("torchrun")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        half = trainer()
        half.train(iters=3)
        half.save_checkpoint(folder / "1proc-step3.pt")
        one = trainer()  # batch 8 in one micro-batch
        one.train()
        accumulated = trainer(batch_size=4, grad_accum_steps=2)  # 2 micro-batches of 4
        accumulated.train()
    finally:
        torch.set_num_threads(threads)
    (folder / "worker.py").write_text(WORKER)
    command = distributed.torchrun_command(str(folder / "worker.py"), 2, str(folder))
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    out = torch.load(folder / "out.pt", weights_only=False)
    return folder, out, one, accumulated


@pytest.mark.slow
def test_ddp_on_two_processes_equals_gradient_accumulation_bit_for_bit(launched):
    _, out, _, accumulated = launched
    ddp, want = out["ddp"]["history"], accumulated.history
    # every loss and learning rate (the evaluations differ: they use batch_size 8 against 4)
    assert (ddp.train_loss, ddp.lr, ddp.eval_iter) == (want.train_loss, want.lr, want.eval_iter)
    assert max_difference(out["ddp"]["model"], accumulated.model.state_dict()) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_equal_one_on_the_same_global_batch(launched, parallel):
    _, out, one, _ = launched
    got = out[parallel]
    assert max_difference(got["model"], one.model.state_dict()) < 5e-5
    assert got["history"].lr == one.history.lr
    assert got["history"].eval_iter == one.history.eval_iter == [0, 3, 6]
    for a, b in zip(got["history"].train_loss, one.history.train_loss):
        assert a == pytest.approx(b, rel=1e-5)
    for a, b in zip(got["history"].eval_loss["val"], one.history.eval_loss["val"]):
        assert a == pytest.approx(b, rel=1e-5)
    assert got["history"].train_loss[-1] < got["history"].train_loss[0]  # it learned


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_checkpoints_move_between_world_sizes(launched, parallel):
    folder, out, one, _ = launched
    # 2 -> 2: resuming continues exactly as if the run had not stopped.
    resumed = out[f"{parallel} resumed"]
    assert resumed["history"] == out[parallel]["history"]
    assert max_difference(resumed["model"], out[parallel]["model"]) == 0.0
    # 1 -> 2: the first 3 steps are the one process's own, bit for bit; the rest agree
    # with the uninterrupted one-process run to rounding.
    moved = out[f"{parallel} from 1 process"]
    assert moved["history"].train_loss[:3] == one.history.train_loss[:3]
    assert max_difference(moved["model"], one.model.state_dict()) < 5e-5
    # 2 -> 1: a checkpoint two processes saved, resumed here in one.
    here = trainer(seed=99)
    here.load_checkpoint(folder / f"{parallel}-2proc-step3.pt")
    assert here.iter == 3
    here.train()
    assert here.history.train_loss[:3] == out[parallel]["history"].train_loss[:3]
    assert max_difference(here.model.state_dict(), out[parallel]["model"]) < 5e-5


# A process that trains with one other and, in the forward pass of step 3, is killed (kill)
# or stops answering (hang); the other must stop with a clear error within the timeout.
FAILING = textwrap.dedent("""
    import os, signal, sys, time
    import torch
    from lmlib import distributed
    from lmlib.batches import get_batch
    from lmlib.model import GPT, GPTConfig
    from lmlib.train import TrainConfig, Trainer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layers=1, n_heads=2, d_model=16))
    data, calls = torch.arange(200) % 11, []

    def loss_fn(model, generator):
        calls.append(1)
        if int(os.environ["RANK"]) == 1 and len(calls) == 3:
            if sys.argv[1] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(600)  # hang: alive, but never at the next collective
        x, y = get_batch(data, 4, 8, generator)
        return model(distributed.shard(x), distributed.shard(y)).loss

    cfg = TrainConfig(max_iters=1000, block_size=8, warmup_iters=2, eval_iters=0,
                      progress=False, device="cpu", dist_timeout=float(sys.argv[2]))
    Trainer(model, cfg=cfg, loss_fn=loss_fn).train()
""")


@pytest.mark.slow
@pytest.mark.parametrize("mode, timeout", [("kill", 60.0), ("hang", 5.0)])
def test_a_dead_or_hung_process_stops_the_other_with_a_clear_error(tmp_path, mode, timeout):
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    port = distributed.free_port()
    procs = []
    try:
        for rank in (0, 1):
            rank_env = {**env(), "MASTER_PORT": str(port), "WORLD_SIZE": "2",
                        "RANK": str(rank), "LOCAL_RANK": str(rank)}  # fmt: skip
            procs.append(subprocess.Popen([sys.executable, str(script), mode, str(timeout)],
                                          env=rank_env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))  # fmt: skip
        start = time.monotonic()
        _, err = procs[0].communicate(timeout=300)
        # Rank 0 waited for step 3's all-reduce: at once for a dead peer, the timeout for
        # a silent one (plus the start-up of both processes, which `start` includes).
        waited = time.monotonic() - start
        assert procs[0].returncode != 0
        assert "process 0 of 2: another process stopped answering" in err, err[-3000:]
        assert waited < timeout + 120
        if mode == "kill":
            assert procs[1].wait(timeout=60) == -signal.SIGKILL
        else:
            assert "Timed out" in err or "timed out" in err, err[-3000:]
            assert procs[1].poll() is None  # still hanging: the error came from rank 0's side
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --- one process ---------------------------------------------------------------------------


def test_alone_every_collective_is_the_identity():
    x = torch.arange(6.0)
    assert distributed.average(x) is x
    assert distributed.shard(x) is x
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, "fsdp", torch.device("cpu")) is model
    assert distributed.setup(torch.device("cpu")) == torch.device("cpu")
    assert not distributed.is_distributed()


def test_peer_failure_recognises_lost_processes_only():
    lost = distributed.peer_failure(RuntimeError("[gloo] Connection closed by peer [127.0.0.1]"),
                                    30)  # fmt: skip
    assert "another process stopped answering" in str(lost) and "30 s" in str(lost)
    assert distributed.peer_failure(ValueError("batch_size must be an int"), 30) is None


def test_config_checks_the_new_fields():
    with pytest.raises(ValueError, match="parallel must be 'ddp' or 'fsdp', got 'zero'"):
        TrainConfig(parallel="zero")
    with pytest.raises(ValueError, match="dist_timeout must be a finite number > 0, got 0"):
        TrainConfig(dist_timeout=0)
    with pytest.raises(TypeError, match="activation_checkpointing must be True or False"):
        TrainConfig(activation_checkpointing="yes")
    with pytest.raises(ValueError, match="parallel must be one of"):
        distributed.wrap(torch.nn.Linear(1, 1), "zero", torch.device("cpu"))


def test_a_checkpoint_resumes_with_other_parallel_settings(tmp_path):
    """parallel, dist_timeout and activation_checkpointing change no number a step
    computes, so a run saved with one setting resumes with another."""
    saved = trainer(max_iters=4)
    saved.train(iters=2)
    saved.save_checkpoint(tmp_path / "ckpt.pt")
    other = trainer(seed=3, max_iters=4, parallel="fsdp", dist_timeout=10.0,
                    activation_checkpointing=True)  # fmt: skip
    other.load_checkpoint(tmp_path / "ckpt.pt")
    assert other.train() == saved.train()
    assert max_difference(other.model.state_dict(), saved.model.state_dict()) == 0.0
