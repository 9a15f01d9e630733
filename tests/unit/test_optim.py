"""AdamW's parameter groups and the learning-rate schedule (lmlib.optim): the schedule by
hand at its turning points, and which tensors are decayed, on a GPT and a Llama; and the
memory order of the weights the Trainer trains (row_major_trainable)."""

import copy
import math

import pytest
import torch

from lmlib.model import GPT, GPTConfig, Llama, LlamaConfig, column_major_linears
from lmlib.optim import configure_optimizer, lr_at, row_major_trainable
from lmlib.train import TrainConfig, Trainer

V, T = 8, 8


def tiny_gpt():  # one layer: every parameter name below is checked by hand
    return GPT(GPTConfig(block_size=T, vocab_size=V, n_layers=1, n_heads=2, d_model=16))


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    cfg = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_iters=10, lr_decay_iters=110)
    assert lr_at(0, cfg) == pytest.approx(0.1)  # 1/10 of the peak: step 0 already learns
    assert lr_at(4, cfg) == pytest.approx(0.5)
    assert lr_at(9, cfg) == pytest.approx(1.0)  # the last warm-up step reaches the peak
    assert lr_at(10, cfg) == pytest.approx(1.0)  # the cosine starts at its top
    assert lr_at(60, cfg) == pytest.approx(0.55)  # halfway: (1.0 + 0.1) / 2
    assert lr_at(35, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(110, cfg) == lr_at(10_000, cfg) == 0.1  # the floor, and it stays
    decay = [lr_at(it, cfg) for it in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_linear_decay_is_a_straight_line_to_the_floor():
    cfg = TrainConfig(max_iters=10, learning_rate=1.0, min_lr=0.2, warmup_iters=2,
                      decay="linear")  # fmt: skip
    assert [lr_at(it, cfg) for it in (0, 1)] == [0.5, 1.0]  # the same warm-up
    assert [lr_at(it, cfg) for it in range(2, 11)] == pytest.approx(
        [1.0 - 0.8 * k / 8 for k in range(9)])  # fmt: skip
    # Fine-tuning's schedule: from lr to zero, exactly lr * (1 - step / steps) at each step.
    cfg = TrainConfig(max_iters=7, learning_rate=3e-2, min_lr=0.0, warmup_iters=0,
                      decay="linear")  # fmt: skip
    assert [lr_at(it, cfg) for it in range(7)] == [3e-2 * (1 - it / 7) for it in range(7)]


def test_schedule_without_warmup_and_with_the_default_decay_end():
    cfg = TrainConfig(max_iters=100, learning_rate=1.0, min_lr=0.0, warmup_iters=0)
    assert cfg.decay_iters == 100  # lr_decay_iters=None: decay over the whole run
    assert lr_at(0, cfg) == 1.0
    assert lr_at(50, cfg) == pytest.approx(0.5)
    assert lr_at(100, cfg) == 0.0


def decay_names(model, opt):
    names = {id(p): n for n, p in model.named_parameters()}
    return {g["weight_decay"]: {names[id(p)] for p in g["params"]} for g in opt.param_groups}


def test_weight_decay_only_on_matrices_and_embeddings_and_tied_weights_once():
    model = tiny_gpt()
    groups = decay_names(model, configure_optimizer(model, TrainConfig(weight_decay=0.1)))
    block = "transformer.h.0."
    assert groups[0.1] == {"transformer.wte.weight", "transformer.wpe.weight",
                           block + "attn.c_attn.weight", block + "attn.c_proj.weight",
                           block + "mlp.c_fc.weight", block + "mlp.c_proj.weight"}  # fmt: skip
    assert all(n.endswith(".bias") or ".ln_" in n for n in groups[0.0])
    assert len(groups[0.0]) == 10  # 4 Linear biases + 3 LayerNorms * (weight, bias)
    # lm_head is wte: one tensor, in one group once, so it is decayed and updated once.
    assert model.lm_head.weight is model.transformer.wte.weight
    opt = configure_optimizer(model, TrainConfig())
    in_groups = [p for g in opt.param_groups for p in g["params"]]
    assert len(in_groups) == len({id(p) for p in in_groups}) == len(list(model.parameters()))


def test_llama_norm_gains_are_not_decayed():
    model = Llama(LlamaConfig(vocab_size=V, block_size=T, n_layers=1, n_heads=2, n_kv_heads=1,
                              d_model=16, hidden=32))  # fmt: skip
    groups = decay_names(model, configure_optimizer(model, TrainConfig()))
    assert groups[0.0] == {"blocks.0.ln_1.weight", "blocks.0.ln_2.weight", "norm.weight"}
    assert "embed.weight" in groups[0.1] and "blocks.0.mlp.up_proj.weight" in groups[0.1]


def test_frozen_parameters_are_left_out():
    model = tiny_gpt()
    model.transformer.wpe.weight.requires_grad_(False)
    groups = decay_names(model, configure_optimizer(model, TrainConfig()))
    assert "transformer.wpe.weight" not in groups[0.1] | groups[0.0]


def test_row_major_trainable_changes_only_the_order_of_the_trained_weights(tiny_llama_config):
    torch.manual_seed(0)
    model = column_major_linears(Llama(tiny_llama_config))
    frozen = model.blocks[0].attn.q_proj.weight.requires_grad_(False)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert row_major_trainable(model) is model
    assert model.lm_head.weight is model.embed.weight  # the tie survives
    assert not frozen.is_contiguous()  # left as it was: no optimizer state, no gradient
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
        assert p.is_contiguous() or p is frozen, name


def test_the_trainer_trains_a_column_major_model_as_it_trains_a_row_major_one(
    tiny_llama_config,
):
    """The same losses, bit for bit, and the trained weights stored row-major."""
    torch.manual_seed(0)
    rows = Llama(tiny_llama_config)
    cols = column_major_linears(copy.deepcopy(rows))
    data = torch.randint(0, tiny_llama_config.vocab_size, (400,))
    cfg = TrainConfig(max_iters=4, batch_size=2, block_size=8, warmup_iters=0, eval_iters=0,
                      progress=False, device="cpu")  # fmt: skip
    losses = [Trainer(m, data, cfg=cfg).train().train_loss for m in (rows, cols)]
    assert losses[0] == losses[1]
    assert all(p.is_contiguous() for p in cols.parameters())
    # an optimizer that has already stepped keeps the layout its state was made in
    model = column_major_linears(Llama(tiny_llama_config))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(data[None, :8], data[None, 1:9]).loss.backward()
    optimizer.step()
    Trainer(model, data, cfg=cfg, optimizer=optimizer)
    assert not model.embed.weight.is_contiguous()
