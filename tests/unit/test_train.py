"""The trainer: accumulation, history, resuming, mixed precision and bad input; and the same
loop on any loss (``loss_fn``), which fine-tuning uses.

Every model here is a tiny GPT (d_model 16, one or two layers) so the whole file runs in
seconds on a CPU; the real run, Tiny Shakespeare to val loss <= 1.90, is
benchmarks/train_char_gpt.py.
"""

import copy
import math

import pytest
import torch

from lmlib.batches import estimate_loss, get_batch
from lmlib.model import GPT, GPTConfig
from lmlib.optim import lr_at
from lmlib.tokenizers import CharTokenizer
from lmlib.train import History, TrainConfig, Trainer

V, T = 8, 8


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tensors this small gain nothing from a second thread, and on a CPU shared with other
    # jobs each parallel op may wait for a thread the OS has paused: one thread is faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_gpt(seed=0, dropout=0.0, n_layers=1):
    torch.manual_seed(seed)
    cfg = GPTConfig(block_size=T, vocab_size=V, n_layers=n_layers, n_heads=2, d_model=16,
                    dropout=dropout)  # fmt: skip
    return GPT(cfg)


def tiny_cfg(**overrides):
    base = dict(max_iters=8, batch_size=4, block_size=T, warmup_iters=2, learning_rate=1e-2,
                min_lr=1e-3, eval_interval=0, eval_iters=2, progress=False,
                device="cpu")  # fmt: skip
    return TrainConfig(**{**base, **overrides})


def token_data(n=300, seed=0):
    return torch.randint(V, (n,), generator=torch.Generator().manual_seed(seed))


# --- Trainer ----------------------------------------------------------------------------------


def test_gradient_accumulation_equals_one_big_batch():
    data = token_data(seed=5)
    # Two draws of 4 starts are the same numbers as one draw of 8: the same 8 sequences.
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    halves = torch.cat([get_batch(data, 4, T, g1)[0], get_batch(data, 4, T, g1)[0]])
    assert torch.equal(halves, get_batch(data, 8, T, g2)[0])

    model = tiny_gpt(n_layers=2)
    accum = Trainer(copy.deepcopy(model), data, cfg=tiny_cfg(batch_size=4, grad_accum_steps=2,
                                                              seed=7))  # fmt: skip
    big = Trainer(copy.deepcopy(model), data, cfg=tiny_cfg(batch_size=8, seed=7))
    loss_accum, loss_big = accum.step(), big.step()
    assert loss_accum.item() == pytest.approx(loss_big.item(), rel=1e-6)
    # After one Adam step, exp_avg = (1 - beta1) * gradient: compare the gradients themselves.
    for pa, pb in zip(accum.model.parameters(), big.model.parameters()):
        ga, gb = accum.optimizer.state[pa]["exp_avg"], big.optimizer.state[pb]["exp_avg"]
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_history_records_every_step_and_the_eval_points():
    trainer = Trainer(tiny_gpt(), token_data(), token_data(seed=1),
                      tiny_cfg(max_iters=5, eval_interval=2, log_interval=3))  # fmt: skip
    history = trainer.train()
    assert trainer.iter == 5
    assert len(history.train_loss) == len(history.lr) == 5
    assert history.lr == [lr_at(it, trainer.cfg) for it in range(5)]
    assert history.eval_iter == [0, 2, 4, 5]  # before training, every 2 steps, the end
    assert {k: len(v) for k, v in history.eval_loss.items()} == {"train": 4, "val": 4}
    assert history.eval_loss["val"][0] == pytest.approx(math.log(V), abs=0.2)  # untrained
    assert trainer.train() is history and trainer.iter == 5  # done: nothing more to do


def test_tiny_gpt_overfits_a_repeated_string():
    tok = CharTokenizer.from_text("hello world! ")
    data = torch.tensor(tok.encode("hello world! " * 30))
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layers=1, n_heads=2,
                          d_model=32))  # fmt: skip
    cfg = tiny_cfg(max_iters=60, block_size=16, batch_size=8, warmup_iters=5)
    history = Trainer(model, data, cfg=cfg).train()
    assert history.train_loss[0] > 1.8  # about ln 9 = 2.2 at the start
    # Only the first character of each window is a guess (the period is 13 characters).
    assert history.eval_loss["train"][-1] < 0.3


def run_history(tmp_path, resume_at=None):
    """8 steps with dropout and accumulation; optionally stopped at resume_at and resumed."""
    data, val = token_data(seed=10), token_data(seed=11)
    cfg = tiny_cfg(max_iters=8, grad_accum_steps=2, eval_interval=3,
                   checkpoint_path=str(tmp_path / "ckpt.pt"))  # fmt: skip
    trainer = Trainer(tiny_gpt(dropout=0.2), data, val, cfg)
    if resume_at is None:
        return trainer.train(), trainer.model
    trainer.train(iters=resume_at)  # saves the checkpoint when it returns
    torch.rand(100)  # move the global RNG on: the checkpoint must restore it
    resumed = Trainer(tiny_gpt(seed=99, dropout=0.2), data, val, cfg)  # other weights
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.iter == resume_at
    return resumed.train(), resumed.model


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    full, full_model = run_history(tmp_path / "a")
    resumed, resumed_model = run_history(tmp_path / "b", resume_at=4)
    assert resumed == full  # exact float equality of every loss, lr and eval point
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_calling_train_again_continues_the_run():
    cfg = tiny_cfg(max_iters=6)
    whole = Trainer(tiny_gpt(), token_data(), cfg=cfg).train()
    split = Trainer(tiny_gpt(), token_data(), cfg=cfg)
    split.train(iters=2), split.train(iters=3)
    assert split.iter == 5
    assert split.train() == whole


def test_checkpoint_from_another_config_or_model_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(max_iters=2)).save_checkpoint(path)
    with pytest.raises(ValueError, match=r"another config.*'learning_rate': \(0.01, 0.02\)"):
        Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(learning_rate=2e-2)).load_checkpoint(path)
    # max_iters may change only where the schedule does not depend on it.
    with pytest.raises(ValueError, match="lr_decay_iters"):
        Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(max_iters=20)).load_checkpoint(path)
    fixed = dict(lr_decay_iters=8)
    Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(max_iters=2, **fixed)).save_checkpoint(path)
    Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(max_iters=20, **fixed)).load_checkpoint(path)
    deeper = Trainer(tiny_gpt(n_layers=2), token_data(), cfg=tiny_cfg(**fixed))
    before = copy.deepcopy(deeper.model.state_dict())
    with pytest.raises(ValueError, match=r"another model: missing \['transformer.h.1"):
        deeper.load_checkpoint(path)
    # load_state_dict alone would have copied layer 0 before noticing layer 1 is missing
    assert all(torch.equal(before[k], v) for k, v in deeper.model.state_dict().items())


def test_a_checkpoint_from_before_a_config_field_existed_still_loads(tmp_path):
    path = tmp_path / "ckpt.pt"
    Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(max_iters=2)).save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["config"]["decay"], checkpoint["sha256"]  # as saved before both existed
    torch.save(checkpoint, path)
    with pytest.warns(UserWarning, match="no checksum"):
        Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(max_iters=2)).load_checkpoint(path)
    with (
        pytest.raises(ValueError, match="'decay': \\('cosine', 'linear'\\)"),
        pytest.warns(UserWarning),
    ):
        Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(max_iters=2, decay="linear")
                ).load_checkpoint(path)  # fmt: skip


def test_trainer_rejects_bad_input():
    with pytest.raises(ValueError, match="val_data has 5 tokens"):
        Trainer(tiny_gpt(), token_data(), torch.arange(5), tiny_cfg())
    with pytest.raises(TypeError, match="train_data must hold integer"):
        Trainer(tiny_gpt(), token_data().float(), cfg=tiny_cfg())
    with pytest.raises(ValueError, match="longer than the model's block_size 8"):
        Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(block_size=16))
    trainer = Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg())
    with pytest.raises(ValueError, match="no path given"):
        trainer.save_checkpoint()
    with pytest.raises(ValueError, match="iters must be an int >= 0, got -1"):
        trainer.train(iters=-1)
    with pytest.raises(TypeError, match="cfg must be a TrainConfig"):
        Trainer(tiny_gpt(), token_data(), cfg={"max_iters": 8})
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(), optimizer="adam")
    with pytest.raises(ValueError, match="eval_iters must be an int >= 1, got 0"):
        estimate_loss(trainer.model, trainer.splits, 0, 4, T)
    with pytest.raises(ValueError, match="exactly one of train_data .* and loss_fn"):
        Trainer(tiny_gpt(), cfg=tiny_cfg())
    with pytest.raises(ValueError, match="exactly one of train_data .* and loss_fn"):
        Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(), loss_fn=token_loss(token_data()))
    with pytest.raises(ValueError, match="nothing to evaluate"):
        Trainer(tiny_gpt(), cfg=tiny_cfg(), loss_fn=token_loss(token_data())).evaluate()


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(min_lr=1.0, learning_rate=0.1), "min_lr <= learning_rate"),
        (dict(warmup_iters=50, max_iters=10), "past the end of the decay"),
        (dict(batch_size=0), "batch_size must be an int >= 1, got 0"),
        (dict(batch_size=2.5), "batch_size must be an int >= 1, got 2.5"),
        (dict(grad_clip=-1.0), r"grad_clip must be a finite number > 0, got -1.0"),
        (dict(learning_rate=float("inf")), "learning_rate must be a finite number >= 0, got inf"),
        (dict(min_lr=float("nan")), "min_lr must be a finite number >= 0, got nan"),
        (dict(weight_decay=-0.1), "weight_decay must be a finite number >= 0"),
        (dict(betas=(0.9,)), r"betas must be a pair"),
        (dict(betas=(0.9, 1.0)), r"betas\[1\] must be below 1"),
        (dict(max_iters=-5), "max_iters must be an int >= 0, got -5"),
        (dict(device=0), "device must be None or a str"),
        (dict(progress="no"), "progress must be True or False"),
        (dict(mixed_precision="fp8"), "mixed_precision must be"),
        (dict(decay="step"), "decay must be"),
    ],
)
def test_config_rejects_bad_values(overrides, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TrainConfig(**overrides)


def test_mixed_precision_on_cpu_is_bf16_when_asked():
    with pytest.warns(UserWarning, match="for CUDA"):
        trainer = Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(mixed_precision="fp16"))
    assert trainer.amp_dtype is None and not trainer.scaler.is_enabled()
    assert Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg()).amp_dtype is None  # "auto"
    cfg = tiny_cfg(mixed_precision="bf16", max_iters=30)
    bf16 = Trainer(tiny_gpt(), token_data(), cfg=cfg)
    assert bf16.amp_dtype == torch.bfloat16 and not bf16.scaler.is_enabled()
    history = bf16.train()
    assert history.train_loss[-1] < history.train_loss[0]
    fp32 = Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(max_iters=30)).train()
    assert history.train_loss[-1] == pytest.approx(fp32.train_loss[-1], abs=0.05)
    assert history.train_loss != fp32.train_loss  # bf16 did round


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_trains(precision):
    cfg = tiny_cfg(device="cuda", mixed_precision=precision, max_iters=30)
    trainer = Trainer(tiny_gpt(), token_data(), cfg=cfg)
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    history = trainer.train()
    assert history.train_loss[-1] < history.train_loss[0]
    assert isinstance(history, History)


# --- Trainer with a loss_fn ---------------------------------------------------------------------


def token_loss(data, batch_size=4):
    """A loss_fn that does what the trainer does with token data: random windows."""

    def loss_fn(model, generator):
        return model(*get_batch(data, batch_size, T, generator)).loss

    return loss_fn


def test_a_loss_fn_trains_exactly_as_token_data_does():
    data, val = token_data(seed=3), token_data(seed=4)
    cfg = tiny_cfg(max_iters=6, grad_accum_steps=2, eval_interval=3)
    by_data = Trainer(tiny_gpt(), data, val, cfg)
    by_loss = Trainer(tiny_gpt(), val_data=val, cfg=cfg, loss_fn=token_loss(data))
    got, want = by_loss.train(), by_data.train()
    assert (got.train_loss, got.lr, got.eval_iter) == (want.train_loss, want.lr, want.eval_iter)
    assert got.eval_loss == {"val": want.eval_loss["val"]}  # only the token data given
    for a, b in zip(by_data.model.parameters(), by_loss.model.parameters()):
        assert torch.equal(a, b)


def test_loss_fn_resumes_bit_for_bit_with_clipping_and_its_own_optimizer(tmp_path):
    """Any model, any loss: y = 3 x + 1 with SGD and heavy clipping, stopped and resumed."""

    def loss_fn(model, generator):
        x = torch.randn(16, 1, generator=generator)
        return ((model(x) - (3 * x + 1)) ** 2).mean()

    cfg = tiny_cfg(max_iters=10, learning_rate=0.05, min_lr=0.005, grad_clip=0.1,
                   grad_accum_steps=2, checkpoint_path=str(tmp_path / "ckpt.pt"))  # fmt: skip

    def trainer(seed=0):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Dropout(0.1),
                                    torch.nn.Linear(8, 1))  # fmt: skip
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        trainer = Trainer(model, cfg=cfg, loss_fn=loss_fn, optimizer=optimizer)
        assert trainer.optimizer is optimizer
        return trainer

    full = trainer()
    history = full.train()
    assert history.lr == [lr_at(it, cfg) for it in range(10)]
    assert history.train_loss[-1] < history.train_loss[0] and not history.eval_iter
    trainer().train(iters=4)  # saves the checkpoint when it returns
    torch.rand(10)  # move the global RNG (dropout) on: the checkpoint restores it
    resumed = trainer(seed=1)  # other weights
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.train() == history
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


# --- checkpoints that are not what they should be ----------------------------------------------


def saved(tmp_path, **overrides):
    path = tmp_path / "ckpt.pt"
    trainer = Trainer(tiny_gpt(), token_data(), cfg=tiny_cfg(max_iters=2, **overrides))
    trainer.train()
    trainer.save_checkpoint(path)
    return path, trainer


def assert_refused_and_unchanged(path, match, **overrides):
    fresh = Trainer(tiny_gpt(seed=5), token_data(), cfg=tiny_cfg(max_iters=2, **overrides))
    before = copy.deepcopy(fresh.model.state_dict())
    with pytest.raises(ValueError, match=match):
        fresh.load_checkpoint(path)
    assert fresh.iter == 0 and fresh.history == History()
    assert all(torch.equal(before[k], v) for k, v in fresh.model.state_dict().items())


def test_a_damaged_byte_inside_a_tensor_is_detected(tmp_path):
    path, trainer = saved(tmp_path)
    data = bytearray(path.read_bytes())
    weight = trainer.model.transformer.wpe.weight.detach().numpy().tobytes()
    at = data.find(weight)  # torch.save stores tensor bytes uncompressed
    assert at > 0
    data[at + len(weight) // 2] ^= 0x40  # one flipped bit in one float
    path.write_bytes(bytes(data))
    torch.load(path, weights_only=True)  # torch itself loads it without a word
    assert_refused_and_unchanged(path, r"is damaged: its contents do not match the SHA-256")


def test_truncated_files_and_plain_state_dicts_say_what_they_are(tmp_path):
    path, trainer = saved(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_refused_and_unchanged(path, r"not a readable checkpoint: it may be truncated")
    torch.save(trainer.model.state_dict(), path)
    assert_refused_and_unchanged(path, r"plain state dict \(\d+ tensors such as 'transformer")
    torch.save({"step": 3}, path)
    assert_refused_and_unchanged(path, r"not a checkpoint of a run: it holds \['step'\]")
    with pytest.raises(FileNotFoundError):
        trainer.load_checkpoint(tmp_path / "missing.pt")


def test_a_checkpoint_of_another_optimizer_leaves_the_model_unchanged(tmp_path):
    path = tmp_path / "ckpt.pt"
    model = tiny_gpt()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    Trainer(model, token_data(), cfg=tiny_cfg(max_iters=2), optimizer=sgd).save_checkpoint(path)
    assert_refused_and_unchanged(path, "another optimizer")  # the trainer's own AdamW


def test_a_diverging_run_stops_with_an_error():
    def nan_loss(model, generator):
        return model(torch.zeros(1, 1, dtype=torch.long)).logits.sum() * float("nan")

    trainer = Trainer(tiny_gpt(), cfg=tiny_cfg(max_iters=3), loss_fn=nan_loss)
    with pytest.raises(FloatingPointError, match="training loss is nan at step 0"):
        trainer.train()
