"""The memory model of lmlib.memory against the book's models, measured step by step.

Parameter counts against `count_parameters` and the published sizes; the activations the
book's GPT saves against `activation_elements(impl="lmlib")`; the peak of a real training
step between what must be alive at once and the model's total; the tracker against the
operating system's peak resident memory; activation checkpointing's gradients against
none.
"""

import copy
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lmlib.memory import (
    SHAPES,
    SHARDINGS,
    AllocationTracker,
    TransformerShape,
    activation_elements,
    checkpoint_blocks,
    measure_step,
    parameter_memory,
    shape_of,
    training_memory,
)
from lmlib.model import GPT, GPTConfig, Llama, LlamaConfig, count_parameters
from lmlib.optim import configure_optimizer
from lmlib.train import TrainConfig


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "config",
    [
        GPTConfig(block_size=16, vocab_size=50, n_layers=3, n_heads=4, d_model=32),
        GPTConfig(block_size=8, vocab_size=7, n_layers=1, n_heads=2, d_model=8, bias=False),
        LlamaConfig(vocab_size=60, block_size=16, n_layers=2, n_heads=4, n_kv_heads=2,
                    d_model=32, hidden=48),
        LlamaConfig(vocab_size=60, block_size=16, n_layers=2, n_heads=4, n_kv_heads=4,
                    d_model=32, hidden=40, tie_embeddings=False),
    ],
)  # fmt: skip
def test_parameter_count_matches_the_models(config):
    model = GPT(config) if isinstance(config, GPTConfig) else Llama(config)
    assert shape_of(config).n_params == count_parameters(model)["total"]


def test_published_sizes():
    # GPT-2 small 124.4M, SmolLM2-135M 134.5M (TOOLCHAIN: "a 134.5M-parameter Llama"),
    # Llama 2 7B and 70B as Meta's model cards give them (6.74B, 68.98B).
    counts = {name: shape.n_params for name, shape in SHAPES.items()}
    assert counts == {
        "SmolLM2-135M": 134_515_008,
        "GPT-2 (124M)": 124_439_808,
        "Llama-2-7B": 6_738_415_616,
        "Llama-2-70B": 68_976_648_192,
    }


def gpt_step(L, B, T, C, nh, V, checkpointing=False, dropout=0.0):
    torch.manual_seed(0)
    config = GPTConfig(block_size=T, vocab_size=V, n_layers=L, n_heads=nh, d_model=C,
                       dropout=dropout)  # fmt: skip
    model = GPT(config)
    if checkpointing:
        checkpoint_blocks(model)
    optimizer = configure_optimizer(model, TrainConfig())
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(V, (B, T), generator=g), torch.randint(V, (B, T), generator=g)
    return config, model, optimizer, lambda: model(x, y).loss


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("sizes", [(2, 3, 16, 32, 4, 99), (3, 4, 32, 64, 2, 65)])
def test_measured_step_matches_the_model(sizes, checkpointing):
    config, model, optimizer, loss_fn = gpt_step(*sizes, checkpointing=checkpointing)
    measure_step(model, optimizer, loss_fn)  # Adam's state now exists
    got = measure_step(model, optimizer, loss_fn)
    want = training_memory(shape_of(config), sizes[1], sizes[2], impl="lmlib",
                           checkpointing=checkpointing)  # fmt: skip
    assert got["weights"] == want.weights and got["gradients"] == want.gradients
    n_tensors = len(list(model.parameters()))
    assert got["optimizer"] == want.optimizer + 4 * n_tensors  # plus Adam's step counters
    # What the forward pass leaves alive: the count, plus the positions (T int64) and the
    # loss; with checkpointing one layer is not alive yet (it is recomputed in backward).
    layer, top = activation_elements(shape_of(config), sizes[1], sizes[2], "lmlib")
    saved = want.activations - (4 * layer if checkpointing else 0)
    assert 0 <= got["activations"] - saved <= 8 * sizes[2] + 64
    # At the end of the forward pass weights, Adam and activations are all alive; the
    # model's total adds every gradient on top, which the backward pass frees space for.
    alive = got["weights"] + got["optimizer"] + got["activations"]
    assert alive <= got["peak"] <= 1.01 * want.total


def test_checkpointing_gives_the_same_gradients_and_saves_memory():
    for make in (
        lambda: GPT(GPTConfig(block_size=16, vocab_size=30, n_layers=3, n_heads=2, d_model=16,
                              dropout=0.2)),
        lambda: Llama(LlamaConfig(vocab_size=30, block_size=16, n_layers=3, n_heads=4,
                                  n_kv_heads=2, d_model=16, hidden=24)),
    ):  # fmt: skip
        torch.manual_seed(0)
        plain = make()
        checked = copy.deepcopy(plain)
        assert checkpoint_blocks(checked) == 3
        x = torch.randint(30, (4, 16), generator=torch.Generator().manual_seed(2))
        grads, saved = [], []
        for model in (plain, checked):
            torch.manual_seed(5)  # the same dropout masks; checkpoint replays them
            with AllocationTracker() as tracker:
                loss = model(x[:, :-1], x[:, 1:]).loss
                saved.append(tracker.live)
                loss.backward()
            grads.append([p.grad for p in model.parameters()])
        for a, b in zip(*grads):
            assert torch.equal(a, b)
        assert saved[1] < 0.5 * saved[0]
    assert torch.equal(checked(x).logits, plain(x).logits)  # inference unchanged too
    assert checked.state_dict().keys() == plain.state_dict().keys()


def test_checkpoint_blocks_refuses_models_without_blocks():
    with pytest.raises(ValueError, match="has no lmlib.model.Block"):
        checkpoint_blocks(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        checkpoint_blocks("gpt")


def test_tracker_counts_new_storage_once_and_frees_it():
    with AllocationTracker() as tracker:
        a = torch.zeros(100)  # 400 bytes
        a.add_(1)  # in place: nothing new
        b = a[10:20]  # a view: nothing new
        c = a * 2  # 400 new
        del a
        assert tracker.live == 800  # the view keeps a's storage alive
        del b
        assert tracker.live == 400
        del c
    assert (tracker.live, tracker.peak) == (0, 800)


@pytest.mark.slow  # a fresh Python process: about 10 s on a busy 2-core CPU
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for the peak resident memory")
def test_tracker_agrees_with_the_operating_system(tmp_path):
    """A fresh process's peak resident memory grows by what the tracker says (within 10%),
    with malloc told to hand every block of 64 kB or more back to the system at once."""
    script = textwrap.dedent("""
        import torch
        from lmlib.memory import measure_step
        from lmlib.model import GPT, GPTConfig
        from lmlib.optim import configure_optimizer
        from lmlib.train import TrainConfig

        def peak_rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) * 1024

        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = GPT(GPTConfig(block_size=64, vocab_size=65, n_layers=4, n_heads=4,
                              d_model=128))
        optimizer = configure_optimizer(model, TrainConfig())
        x, y = torch.randint(65, (24, 64)), torch.randint(65, (24, 64))
        loss_fn = lambda: model(x, y).loss
        measure_step(model, optimizer, loss_fn)
        measure_step(model, optimizer, loss_fn)
        open("/proc/self/clear_refs", "w").write("5")  # peak := current
        start = peak_rss()
        m = measure_step(model, optimizer, loss_fn)
        print(peak_rss() - start, m["peak"] - m["weights"] - m["optimizer"])
    """)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout  # fmt: skip
    rss, tracked = map(int, out.split())
    assert tracked > 40e6  # this step's activations and gradients, about 55 MB
    assert abs(rss - tracked) < 0.1 * tracked


def test_parameter_memory_shards_as_zero_does():
    P, N = 1_000_000, 8
    ddp = parameter_memory(P, "bf16")
    assert ddp == (2 * P, 2 * P, 12 * P) and sum(ddp) == sum(parameter_memory(P, "fp32"))
    assert parameter_memory(P, "bf16", "zero1", N) == (2 * P, 2 * P, 12 * P // N)
    assert parameter_memory(P, "bf16", "zero2", N) == (2 * P, 2 * P // N, 12 * P // N)
    assert parameter_memory(P, "bf16", "zero3", N) == (2 * P // N, 2 * P // N, 12 * P // N)


@given(st.integers(1, 10**11), st.sampled_from(SHARDINGS), st.integers(1, 1024))
def test_sharding_never_adds_and_one_process_shards_nothing(n_params, sharding, world_size):
    shape = SHAPES["Llama-2-7B"]
    sharded = parameter_memory(n_params, "bf16", sharding, world_size)
    assert sum(sharded) <= sum(parameter_memory(n_params, "bf16"))
    assert parameter_memory(n_params, "bf16", sharding, 1) == parameter_memory(n_params, "bf16")
    per_process = training_memory(shape, 1, 4096, "bf16", sharding, world_size)
    assert per_process.total <= training_memory(shape, 1, 4096, "bf16").total + (
        shape.layer_params * 4 if sharding == "zero3" else 0
    )


def test_bad_input_names_the_argument():
    shape = SHAPES["GPT-2 (124M)"]
    with pytest.raises(ValueError, match="precision must be one of"):
        training_memory(shape, 1, 8, precision="fp16")
    with pytest.raises(ValueError, match="sharding must be one of"):
        training_memory(shape, 1, 8, sharding="zero4")
    with pytest.raises(ValueError, match="world_size must be an int >= 1, got 0"):
        parameter_memory(10, world_size=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        activation_elements(shape, 0, 8)
    with pytest.raises(ValueError, match="impl must be 'fused' or 'lmlib'"):
        activation_elements(shape, 1, 8, impl="flash")
    with pytest.raises(ValueError, match="for the book's GPT only"):
        activation_elements(SHAPES["Llama-2-7B"], 1, 8, impl="lmlib")
    with pytest.raises(ValueError, match="family must be 'gpt' or 'llama'"):
        TransformerShape("bert", 1, 8, 2, 10, 8, 32)
    with pytest.raises(TypeError, match="config must be a GPTConfig or LlamaConfig"):
        shape_of({"n_layers": 2})
