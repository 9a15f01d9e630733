"""GRPO: group-relative advantages, the clipped objective, rollouts (lmlib.grpo).

Checked by hand, against `trl`'s GRPOTrainer loss on the same log-probabilities, and on a tiny
model: rollouts label exactly the sampled answer, the shared-prefix log-probabilities equal
the padded batch's, and a few steps raise a reward the model can reach.
"""

import copy
import types
from collections import defaultdict

import pytest
import torch

from lmlib.finetune import add_lora
from lmlib.generate import GenerationConfig
from lmlib.grpo import (
    GRPO,
    GRPOConfig,
    group_advantages,
    grpo_loss,
    kl_estimate,
    rollout,
    rollout_logprobs,
)
from lmlib.sft import IGNORE, fit

EOS = 3


class Digits:
    """Token i is the character chr(65 + i); token 3 ("D") ends a turn."""

    eos_token_id = EOS

    def encode(self, text, add_special_tokens=True):
        return [ord(c) - 65 for c in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(65 + i) for i in ids if not (skip_special_tokens and i == EOS))


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    # group 1: mean 0.25, std (Bessel) sqrt(0.25) = 0.5 -> (0.75 / 0.5, -0.25 / 0.5)
    expected = torch.tensor([[1.5, -0.5, -0.5, -0.5], [0.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(group_advantages(rewards, eps=0.0)[0], expected[0])
    assert group_advantages(rewards)[1].eq(0).all()  # all alike: nothing to learn
    assert torch.allclose(group_advantages(rewards, scale=False)[0],
                          torch.tensor([0.75, -0.25, -0.25, -0.25]))  # fmt: skip
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.ones(3, 1))


@pytest.mark.slow  # importing trl (transformers' Trainer, datasets) takes ~12 s
def test_group_advantages_match_trl():
    trl_utils = pytest.importorskip("trl.trainer.utils")
    rewards = torch.rand(5, 6, generator=torch.Generator().manual_seed(0)).round(decimals=1)
    mean = rewards.mean(1, keepdim=True)
    std = trl_utils.nanstd(rewards, dim=1, keepdim=True)
    assert torch.allclose(group_advantages(rewards), (rewards - mean) / (std + 1e-4))


def test_clipped_objective_by_hand():
    mask = torch.ones(1, 1, dtype=torch.bool)
    cases = [  # (log ratio, advantage, loss, gradient w.r.t. logp, clipped)
        (0.0, 2.0, -2.0, -2.0, False),  # on-policy: -A * ratio, gradient -A
        (0.5, 1.0, -1.2, 0.0, True),  # ratio e^0.5 = 1.65 > 1.2 and A > 0: clipped, no push
        (0.5, -1.0, 1.6487, 1.6487, False),  # A < 0: min picks the unclipped -ratio * A
        (-0.5, -1.0, 0.8, 0.0, True),  # ratio 0.61 < 0.8 and A < 0: clipped
    ]
    for log_ratio, advantage, loss, grad, clipped in cases:
        logp = torch.tensor([[log_ratio]], requires_grad=True)
        out = grpo_loss(logp, torch.zeros(1, 1), torch.tensor([advantage]), mask, clip_eps=0.2)
        out.loss.backward()
        assert abs(out.loss.item() - loss) < 1e-4
        assert abs(logp.grad.item() - grad) < 1e-4
        assert out.clip_fraction == float(clipped)


def test_loss_averages_tokens_then_answers_and_adds_the_kl():
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    advantages = torch.tensor([1.0, -1.0])
    out = grpo_loss(logp, logp, advantages, mask)  # ratio 1: loss -A per token
    assert abs(out.loss.item() - (-1.0 + 1.0) / 2) < 1e-6
    ref = logp - torch.tensor([[0.5, 0.0, 9.0], [1.0, 9.0, 9.0]])
    k3 = kl_estimate(logp, ref)
    assert torch.allclose(k3[0, :2], torch.tensor([0.1065, 0.0]), atol=1e-4)
    with_kl = grpo_loss(logp, logp, advantages, mask, ref_logp=ref, kl_coef=0.1)
    kl_term = 0.1 * ((k3[0, 0] + k3[0, 1]) / 2 + k3[1, 0]) / 2  # per answer, then mean
    assert abs(with_kl.loss.item() - kl_term.item()) < 1e-6
    assert abs(with_kl.kl - (k3[0, 0] + k3[0, 1] + k3[1, 0]).item() / 3) < 1e-6
    with pytest.raises(ValueError, match="needs ref_logp"):
        grpo_loss(logp, logp, advantages, mask, kl_coef=0.1)


def trl_grpo_loss(logp, old_logp, ref_logp, advantages, mask, beta, eps):
    """trl's GRPOTrainer._compute_loss (loss_type "grpo") on given per-token log-probs."""
    from trl.trainer.grpo_trainer import GRPOTrainer

    model = types.SimpleNamespace(training=True)
    accelerator = types.SimpleNamespace(gather=lambda x: x, reduce=lambda x, reduction: x)
    trainer = types.SimpleNamespace(
        model=model, accelerator=accelerator, top_entropy_quantile=1.0,
        off_policy_mask_threshold=None, importance_sampling_level="token", beta=beta,
        args=types.SimpleNamespace(use_bias_correction_kl=False, delta=None), loss_type="grpo",
        epsilon_low=eps, epsilon_high=eps, use_vllm=False, current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False, aux_loss_enabled=False,
        _metrics={"train": defaultdict(list)},
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
    )  # fmt: skip
    N, T = logp.shape
    inputs = {"prompt_ids": torch.zeros(N, 2, dtype=torch.long),
              "prompt_mask": torch.ones(N, 2, dtype=torch.long),
              "completion_ids": torch.zeros(N, T, dtype=torch.long),
              "completion_mask": mask.long(), "advantages": advantages,
              "old_per_token_logps": old_logp, "ref_per_token_logps": ref_logp}  # fmt: skip
    return GRPOTrainer._compute_loss(trainer, model, inputs), trainer._metrics["train"]


@pytest.mark.slow  # importing trl (transformers' Trainer, datasets) takes ~12 s
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_matches_trl(beta):
    pytest.importorskip("trl")
    g = torch.Generator().manual_seed(0)
    N, T = 6, 5
    old = -2 * torch.rand(N, T, generator=g)
    logp = old + 0.6 * torch.randn(N, T, generator=g)  # some ratios beyond 1 +- 0.2
    ref = old + 0.3 * torch.randn(N, T, generator=g)
    advantages = group_advantages(torch.rand(2, 3, generator=g)).flatten()
    mask = torch.arange(T)[None, :] < torch.tensor([5, 3, 1, 4, 5, 2])[:, None]  # (N, T)
    theirs, metrics = trl_grpo_loss(logp, old, ref, advantages, mask, beta, 0.2)
    ours = grpo_loss(logp, old, advantages, mask, 0.2, ref, kl_coef=beta)
    assert abs(ours.loss.item() - theirs.item()) < 1e-6
    assert abs(ours.clip_fraction - metrics["clip_ratio/region_mean"][0]) < 1e-6
    if beta:
        assert abs(ours.kl - metrics["kl"][0]) < 1e-6


def tiny_policy(tiny_llama):
    torch.manual_seed(0)
    return add_lora(copy.deepcopy(tiny_llama), ("q_proj", "v_proj", "o_proj"), r=4)


def test_rollout_labels_the_sampled_answer(tiny_llama):
    gen = GenerationConfig(max_new_tokens=6, do_sample=True)
    r = rollout(tiny_llama, Digits(), ["ABC", "EFGHI"], 3, gen, torch.Generator().manual_seed(0))
    assert r.idx.shape[0] == 6 and r.group.tolist() == [0, 0, 0, 1, 1, 1]
    T0 = 5  # the longer prompt; the shorter is padded on the left
    assert r.attention_mask[:3, :2].eq(0).all() and r.attention_mask[:, 2:T0].eq(1).all()
    for row in range(6):
        new = r.idx[row, T0:].tolist()
        end = new.index(EOS) + 1 if EOS in new else len(new)  # up to and including eos
        labelled = r.targets[row][r.targets[row] != IGNORE].tolist()
        assert labelled == new[:end]
        assert r.targets[row, T0 - 1 : T0 - 1 + end].tolist() == new[:end]
        assert r.texts[row] == Digits().decode([t for t in new[:end] if t != EOS])
        assert r.attention_mask[row, T0:].sum() == end


def test_shared_prompt_logprobs_equal_the_padded_batch(tiny_llama):
    policy = tiny_policy(tiny_llama)
    gen = GenerationConfig(max_new_tokens=5, do_sample=True)
    r = rollout(policy, Digits(), ["ABC", "EFGHIJ"], 4, gen, torch.Generator().manual_seed(1))
    shared = rollout_logprobs(policy, r, 4, share_prefix=True)
    padded = rollout_logprobs(policy, r, 4, share_prefix=False)
    assert torch.allclose(shared, padded, atol=1e-5)
    assert shared[~r.mask].eq(0).all() and shared[r.mask].lt(0).all()
    with pytest.raises(ValueError, match="groups of 3"):
        rollout_logprobs(policy, r, 3)


def test_grpo_raises_a_reachable_reward(tiny_llama):
    """Reward 1 for answers that start with the token the model finds likeliest after the
    prompt (about 9% of samples at first): a few GRPO steps make it the usual answer."""
    policy = tiny_policy(tiny_llama)
    tasks = []
    for prompt in ("ABC", "EFG"):
        first = tiny_llama(torch.tensor([Digits().encode(prompt)])).logits[0, -1].argmax()
        tasks.append((prompt, Digits().decode([int(first)])))
    cfg = GRPOConfig(prompts_per_step=2, group_size=8, max_new_tokens=2, kl_coef=0.04,
                     updates_per_rollout=2)  # fmt: skip

    def reward(text, reference):
        return float(text.startswith(reference))

    grpo = GRPO(Digits(), tasks, reward, cfg)
    fit(policy, grpo, steps=24, lr=1e-2, progress=False)
    assert len(grpo.history) == 12 and len(grpo.history[0].kl) == 2
    first = sum(s.reward for s in grpo.history[:3]) / 3
    last = sum(s.reward for s in grpo.history[-3:]) / 3
    assert first < 0.2 and last > first + 0.3
    assert grpo.history[0].kl[0] == 0.0  # the policy starts as the reference (B = 0)
    assert grpo.history[-1].kl[-1] > 0
    with pytest.raises(ValueError, match="group_size must be at least 2"):
        GRPOConfig(group_size=1)
