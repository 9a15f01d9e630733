"""Reinforcement learning with a verifiable reward: GRPO (Chapter 5).

When a program can check an answer (a sum, a unit test, a format), the model can learn from
its own attempts. DeepSeekMath (Shao et al. 2024) and DeepSeek-R1 (2025) did this with GRPO,
group relative policy optimization, one loop with three ideas:

1. `rollout`: for each prompt, sample a group of G answers from the current policy, with
   `lmlib.generate.generate` (batched, KV-cached sampling); a reward function scores each.
2. `group_advantages`: how much better an answer did than its own group, in units of the
   group's standard deviation. PPO, which InstructGPT used, learns a value network to say
   what reward to expect; GRPO takes the group's mean instead. A group whose answers all
   score the same teaches nothing: every advantage is zero.
3. `grpo_loss`: PPO's clipped objective (Schulman et al. 2017). Raise the probability of
   answers with a positive advantage, lower the others, but through the ratio
   pi / pi_old clipped to [1 - eps, 1 + eps]: once an answer's probability has moved that
   far, its gradient stops, so several updates on one batch of rollouts stay close to the
   policy that sampled them. An optional KL penalty holds the policy near the reference.

`GRPO` joins them into a loss function for `lmlib.train.Trainer`, which runs the optimizer.

Shape legend: P prompts, G answers per prompt, N = P * G rollouts, T time (tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lmlib.generate import GenerationConfig, generate, left_pad
from lmlib.preference import lora_disabled
from lmlib.runtime import eval_mode
from lmlib.sft import IGNORE, token_logprobs


def group_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4):
    """(P, G) rewards -> (P, G) advantages: reward minus its group's mean, divided by the
    group's standard deviation (with Bessel's correction, as in `trl`) plus ``eps``.

    ``scale=False`` keeps only the mean (Dr. GRPO, Liu et al. 2025, argue the division
    over-weights groups that are nearly all right or all wrong).

    >>> group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    tensor([[ 0.8659, -0.8659, -0.8659,  0.8659],
            [ 0.0000,  0.0000,  0.0000,  0.0000]])
    """
    if rewards.dim() != 2 or rewards.size(1) < 2:
        raise ValueError(f"rewards must be (P, G) with G >= 2 answers per prompt, got shape "
                         f"{tuple(rewards.shape)}")  # fmt: skip
    advantages = rewards - rewards.mean(dim=1, keepdim=True)  # (P, G)
    if scale:
        advantages = advantages / (rewards.std(dim=1, keepdim=True) + eps)
    return advantages


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from the sampled tokens' log-probabilities:
    ``exp(q - p) - (q - p) - 1`` with p = log pi, q = log pi_ref (Schulman's "k3", the
    estimator in DeepSeekMath's eq. 4). Never negative, and 0 where pi = pi_ref.

    >>> kl_estimate(torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.0]))
    tensor([0.0000, 0.7183])
    """
    log_ratio = ref_logp - logp
    return log_ratio.exp() - log_ratio - 1


@dataclass
class GRPOLoss:
    """What `grpo_loss` returns, the loss and two numbers to watch."""

    loss: torch.Tensor  # mean over rollouts of the mean over each rollout's tokens
    clip_fraction: float  # share of tokens the clip stopped (no gradient from them)
    kl: float  # mean k3 estimate of KL(pi || pi_ref) per token; nan without ref_logp


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float = 0.2, ref_logp: torch.Tensor | None = None,
              kl_coef: float = 0.0) -> GRPOLoss:  # fmt: skip
    """GRPO's loss (DeepSeekMath eq. 3, to be minimized) for N rollouts of T tokens.

    ``logp``, ``old_logp`` and ``ref_logp``: (N, T) log-probabilities of the sampled tokens
    under the policy being trained, the policy that sampled them, and the reference;
    ``advantages`` (N,); ``mask`` (N, T) true on the answers' tokens. Per token,
    ``-min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) + kl_coef * k3`` with
    ``ratio = exp(logp - old_logp)``; averaged over each answer's tokens, then over answers.

    A worked example: one token with advantage 1 whose probability already rose by a factor
    1.5 is clipped at 1.2, so its loss is -1.2 and it gets no gradient.

    >>> logp = torch.tensor([[0.5]], requires_grad=True)
    >>> out = grpo_loss(logp, torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1, dtype=torch.bool))
    >>> round(out.loss.item(), 4), out.clip_fraction
    (-1.2, 1.0)
    """
    if not (logp.shape == old_logp.shape == mask.shape) or advantages.shape != logp.shape[:1]:
        raise ValueError(f"logp, old_logp and mask need one shape (N, T) and advantages (N,); "
                         f"got {tuple(logp.shape)}, {tuple(old_logp.shape)}, "
                         f"{tuple(mask.shape)} and {tuple(advantages.shape)}")  # fmt: skip
    if kl_coef and ref_logp is None:
        raise ValueError("kl_coef > 0 needs ref_logp, the reference's log-probabilities")
    mask = mask.to(logp.dtype)
    ratio = (logp - old_logp).exp()  # (N, T) pi / pi_old per token
    A = advantages[:, None]  # (N, 1): every token of an answer shares its advantage
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps)
    per_token = -torch.min(ratio * A, clipped * A)  # (N, T)
    kl = float("nan")
    if ref_logp is not None:
        k3 = kl_estimate(logp, ref_logp)  # (N, T)
        per_token = per_token + kl_coef * k3
        kl = ((k3 * mask).sum() / mask.sum().clamp(min=1)).item()
    lengths = mask.sum(-1).clamp(min=1)  # (N,)
    loss = ((per_token * mask).sum(-1) / lengths).mean()
    # Clipped where the clip takes effect: the ratio went too far the way the advantage pushes.
    stopped = ((ratio > 1 + clip_eps) & (A > 0)) | ((ratio < 1 - clip_eps) & (A < 0))  # (N, T)
    clip_fraction = ((stopped * mask).sum() / mask.sum().clamp(min=1)).item()
    return GRPOLoss(loss, clip_fraction, kl)


# --------------------------------------------------------------------------------------------
# Rollouts


@dataclass
class Rollout:
    """N sampled answers, ready for `lmlib.sft.token_logprobs`: prompt and answer in one
    row, prompts padded on the left; targets -100 except on the answer's tokens (up to and
    including its end-of-turn token)."""

    idx: torch.Tensor  # (N, T) prompt tokens, then the sampled answer
    attention_mask: torch.Tensor  # (N, T) 0 on left padding and after the answer ends
    targets: torch.Tensor  # (N, T) shifted: the answer's tokens, -100 elsewhere
    texts: list[str]  # the decoded answers, without the end-of-turn token
    group: torch.Tensor  # (N,) which prompt each row answers
    prompt_length: int  # columns of the padded prompts; the answers start there

    @property
    def mask(self) -> torch.Tensor:
        return self.targets != IGNORE  # (N, T) the positions that carry the answer's tokens


@torch.no_grad()
def rollout(model, tokenizer, prompts: Sequence[str], group_size: int, config: GenerationConfig,
            generator: torch.Generator | None = None) -> Rollout:  # fmt: skip
    """Sample ``group_size`` answers to each prompt (text as the model reads it, e.g. from
    `lmlib.chat.chat_prompt`), G consecutive rows per prompt, in one batch."""
    if group_size < 1 or not prompts:
        raise ValueError(f"need prompts and group_size >= 1, got {len(prompts)} prompts and "
                         f"group_size {group_size}")  # fmt: skip
    eos = tokenizer.eos_token_id
    config = config.replace(eos_token_id=eos, pad_token_id=eos)
    device = next(model.parameters()).device
    ids = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    rows = [row for row in ids for _ in range(group_size)]  # G copies of each prompt
    idx, prompt_mask = left_pad(rows, eos)
    idx, prompt_mask = idx.to(device), prompt_mask.to(device)
    with eval_mode(model):
        seq = generate(model, idx, config, attention_mask=prompt_mask, generator=generator)
    N, T0 = idx.shape
    new = seq[:, T0:]  # (N, n) the sampled tokens; rows that ended are filled with eos
    is_eos = new == eos
    # An answer runs up to and including its first eos (or to max_new_tokens without one).
    first = torch.where(is_eos.any(-1), is_eos.int().argmax(-1), new.size(1) - 1)  # (N,)
    keep = torch.arange(new.size(1), device=device)[None, :] <= first[:, None]  # (N, n)
    attention_mask = torch.cat([prompt_mask, keep.long()], dim=1)  # (N, T0 + n)
    targets = torch.full_like(seq, IGNORE)
    targets[:, T0 - 1 : -1] = new.masked_fill(~keep, IGNORE)  # position t predicts t + 1
    texts = [tokenizer.decode(row[k].tolist(), skip_special_tokens=True)
             for row, k in zip(new, keep & ~is_eos, strict=True)]  # fmt: skip
    group = torch.arange(len(prompts), device=device).repeat_interleave(group_size)
    return Rollout(seq, attention_mask, targets, texts, group, T0)


def rollout_logprobs(model, r: Rollout, group_size: int, share_prefix: bool = True):
    """(N, T) log-probabilities of the rollouts' answer tokens under ``model`` (0 elsewhere).

    With ``share_prefix`` each group's prompt, the same in its G rows, runs once
    (`lmlib.sft.shared_prefix_logits`): the group's left padding is dropped, and what follows
    an answer's end is never seen by the answer under the causal mask, so no attention
    mask is needed. Without it, one batch with ``attention_mask``; the two agree (a test).
    """
    if not share_prefix:
        return token_logprobs(model, r.idx, r.targets, r.attention_mask)
    N, T = r.idx.shape
    if N % group_size:
        raise ValueError(f"{N} rollouts do not split into groups of {group_size}")
    parts = []
    for start in range(0, N, group_size):
        rows = slice(start, start + group_size)
        first = int(r.attention_mask[start].argmax())  # the group's first real token
        logp = token_logprobs(model, r.idx[rows, first:], r.targets[rows, first:],
                              share_prefix=True)  # fmt: skip
        parts.append(F.pad(logp, (first, 0)))  # back to (G, T): zeros where the padding was
    return torch.cat(parts)  # (N, T)


# --------------------------------------------------------------------------------------------
# The training loop's loss


@dataclass
class GRPOConfig:
    """GRPO's numbers; the defaults are small enough for a CPU."""

    prompts_per_step: int = 4  # P prompts drawn for each batch of rollouts
    group_size: int = 8  # G answers sampled per prompt (DeepSeekMath: 64)
    max_new_tokens: int = 32  # longest answer
    temperature: float = 1.0  # sampling temperature of the rollouts
    clip_eps: float = 0.2  # PPO's epsilon: the ratio pi / pi_old is clipped to 1 +- this
    kl_coef: float = 0.04  # beta of the KL penalty (DeepSeekMath: 0.04); 0: no reference
    updates_per_rollout: int = 1  # optimizer steps on each batch of rollouts (mu)
    scale_advantages: bool = True  # divide by the group's standard deviation
    seed: int = 0  # seeds the sampling of answers
    share_prefix: bool = True  # run each group's prompt once (`rollout_logprobs`)

    def __post_init__(self):
        for name in ("prompts_per_step", "group_size", "max_new_tokens", "updates_per_rollout"):
            if getattr(self, name) < 1 or (name == "group_size" and self.group_size < 2):
                raise ValueError(f"{name} must be at least {2 if name == 'group_size' else 1}, "
                                 f"got {getattr(self, name)}")  # fmt: skip
        if not self.clip_eps > 0 or self.kl_coef < 0 or not self.temperature > 0:
            raise ValueError("need clip_eps > 0, kl_coef >= 0 and temperature > 0")


@dataclass
class GRPOStats:
    """One batch of rollouts: what they scored and how the updates on them went."""

    reward: float  # mean reward of the N answers
    frac_zero_advantage: float  # share of groups whose answers all scored the same
    mean_tokens: float  # mean answer length in tokens
    kl: list[float] = field(default_factory=list)  # per update (nan with kl_coef = 0)
    clip_fraction: list[float] = field(default_factory=list)  # per update
    samples: list[tuple[str, str, float]] = field(default_factory=list)  # prompt, answer, reward


RewardFn = Callable[[str, object], float]  # (answer text, reference) -> reward


class GRPO:
    """A loss function for `lmlib.train.Trainer`: each call is one optimizer step.

    ``tasks`` are (prompt text, reference) pairs and ``reward_fn(answer, reference)`` scores
    an answer. Every ``updates_per_rollout`` calls it draws P prompts (with the Trainer's
    generator), samples G answers to each and computes their advantages; each call then
    returns `grpo_loss` on that batch. ``history`` holds a `GRPOStats` per batch.
    """

    def __init__(self, tokenizer, tasks: Sequence[tuple[str, object]], reward_fn: RewardFn,
                 cfg: GRPOConfig | None = None):  # fmt: skip
        if not tasks:
            raise ValueError("tasks is empty: no prompts to learn from")
        self.tokenizer, self.tasks, self.reward_fn = tokenizer, list(tasks), reward_fn
        self.cfg = cfg or GRPOConfig()
        self.history: list[GRPOStats] = []
        self._batch = None  # (rollout, advantages, old_logp, ref_logp) being updated on
        self._updates_left = 0
        self._sampler: torch.Generator | None = None

    def _new_batch(self, model, generator: torch.Generator) -> None:
        cfg, device = self.cfg, next(model.parameters()).device
        if self._sampler is None:  # on the model's device: CUDA sampling needs a CUDA one
            self._sampler = torch.Generator(device=device).manual_seed(cfg.seed)
        picks = torch.randint(len(self.tasks), (cfg.prompts_per_step,), generator=generator)
        tasks = [self.tasks[i] for i in picks.tolist()]
        gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, do_sample=True,
                               temperature=cfg.temperature)  # fmt: skip
        r = rollout(model, self.tokenizer, [p for p, _ in tasks], cfg.group_size, gen,
                    self._sampler)  # fmt: skip
        references = [ref for _, ref in tasks for _ in range(cfg.group_size)]
        pairs = zip(r.texts, references, strict=True)
        rewards = torch.tensor([float(self.reward_fn(text, ref)) for text, ref in pairs])
        grouped = rewards.view(cfg.prompts_per_step, cfg.group_size)  # (P, G)
        advantages = group_advantages(grouped, cfg.scale_advantages).flatten().to(device)
        ref_logp = None
        if cfg.kl_coef > 0:
            with torch.no_grad(), lora_disabled(model):
                ref_logp = rollout_logprobs(model, r, cfg.group_size, cfg.share_prefix)
        self._batch = (r, advantages, None, ref_logp)
        self._updates_left = cfg.updates_per_rollout
        prompts = [p for p, _ in tasks for _ in range(cfg.group_size)]
        self.history.append(GRPOStats(
            reward=rewards.mean().item(),
            frac_zero_advantage=(grouped.std(dim=1) == 0).float().mean().item(),
            mean_tokens=r.mask.sum(-1).float().mean().item(),
            samples=list(zip(prompts, r.texts, rewards.tolist(), strict=True))))  # fmt: skip

    def __call__(self, model, generator: torch.Generator) -> torch.Tensor:
        if self._updates_left == 0:
            self._new_batch(model, generator)
        r, advantages, old_logp, ref_logp = self._batch
        logp = rollout_logprobs(model, r, self.cfg.group_size, self.cfg.share_prefix)  # (N, T)
        if old_logp is None:  # the first update: the policy is still the one that sampled
            old_logp = logp.detach()
            self._batch = (r, advantages, old_logp, ref_logp)
        out = grpo_loss(logp, old_logp, advantages, r.mask, self.cfg.clip_eps, ref_logp,
                        self.cfg.kl_coef)  # fmt: skip
        self._updates_left -= 1
        stats = self.history[-1]
        stats.kl.append(out.kl)
        stats.clip_fraction.append(out.clip_fraction)
        return out.loss
