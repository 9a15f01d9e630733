"""Learning from preferences: a reward model and direct preference optimization (Chapter 5).

Saying which of two answers is better is easier than writing the best one, so the second
stage of turning a language model into an assistant learns from pairs: a prompt, a chosen
answer and a rejected one (`PreferencePair`).

- **Bradley-Terry** (1952): answer c beats answer r with probability sigma(s(c) - s(r)) for
  some score s; `bradley_terry_loss` is the negative log-likelihood of the observed
  preferences. A `RewardModel` is a language model whose output layer (C -> V) is replaced
  by a single number (C -> 1), trained with that loss: InstructGPT's reward model (Ouyang et
  al. 2022), which then steers reinforcement learning (PPO).
- **DPO** (Rafailov et al. 2023) needs no reward model: the policy's own log-probability
  ratio to a frozen reference, ``beta * (log pi(y|x) - log pi_ref(y|x))``, serves as the
  score, and the same Bradley-Terry loss trains the policy directly (`dpo_loss`). With LoRA
  the reference costs no memory: it is the same weights with the adapters switched off
  (`lora_disabled`). ``beta`` sets how far the policy may move from the reference;
  `compare_to_reference` measures how far it went.

Shape legend: N pairs, B batch of pairs, T time (tokens), C channels (d_model), V vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.finetune import LoRALinear
from lmlib.runtime import eval_mode
from lmlib.sft import answer_logits, encode_chat, logit_parts, pad_batch, token_logprobs


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(chosen - rejected) over pairs: the Bradley-Terry model's negative
    log-likelihood of "chosen beat rejected", for scores (N,) each.

    Equal scores mean a coin flip, log 2 = 0.6931; a margin of 2 costs log(1 + e^-2):

    >>> bradley_terry_loss(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0]))
    tensor(0.4100)
    """
    if chosen.shape != rejected.shape:
        raise ValueError(f"chosen and rejected scores need one shape, got {tuple(chosen.shape)} "
                         f"and {tuple(rejected.shape)}")  # fmt: skip
    return -F.logsigmoid(chosen - rejected).mean()


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Share of pairs whose chosen answer scores higher; a tie counts as half a pair.

    >>> pairwise_accuracy(torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 3.0]))
    0.5
    """
    wins = (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
    return wins.mean().item()


# --------------------------------------------------------------------------------------------
# Preference data


@dataclass(frozen=True)
class PreferencePair:
    """A user's ``prompt`` and two answers, ``chosen`` better than ``rejected``."""

    prompt: str
    chosen: str
    rejected: str
    system: str | None = None  # a system message; None: the chat template's default

    def __post_init__(self):
        for name in ("prompt", "chosen", "rejected"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"{name} must be a non-empty string, got "
                                 f"{getattr(self, name)!r}")  # fmt: skip
        if self.chosen.strip() == self.rejected.strip():
            raise ValueError(f"chosen and rejected answers are identical ({self.chosen!r}): "
                             "a pair must prefer one answer over another")  # fmt: skip

    def messages(self, answer: str) -> list[dict]:
        """The conversation with ``answer`` as the assistant's reply."""
        system = [] if self.system is None else [{"role": "system", "content": self.system}]
        return system + [{"role": "user", "content": self.prompt},
                         {"role": "assistant", "content": answer}]  # fmt: skip


def encode_pairs(tokenizer, pairs, max_len: int | None = None):
    """Each `PreferencePair` as two `lmlib.sft.ChatTokens` (chosen, rejected), labels on the
    answers only; ``max_len`` as in `lmlib.sft.encode_chat`."""
    return [(encode_chat(tokenizer, p.messages(p.chosen), max_len=max_len),
             encode_chat(tokenizer, p.messages(p.rejected), max_len=max_len))
            for p in pairs]  # fmt: skip


def pair_batch(encoded, pad_id: int, device=None):
    """idx, targets (2B, T) and lengths (2B,) for B encoded pairs: the B chosen answers in
    rows 0..B-1, the B rejected ones in rows B..2B-1, padded at the end like
    `lmlib.sft.pad_batch`.

    >>> from lmlib.sft import ChatTokens
    >>> c, r = ChatTokens([1, 2, 3], [-100, 2, 3]), ChatTokens([1, 4], [-100, 4])
    >>> idx, targets, lengths = pair_batch([(c, r)], pad_id=0)
    >>> idx.tolist(), targets.tolist(), lengths.tolist()
    ([[1, 2, 3], [1, 4, 0]], [[2, 3, -100], [4, -100, -100]], [3, 2])
    """
    rows = [c for c, _ in encoded] + [r for _, r in encoded]
    idx, targets = pad_batch(rows, pad_id, device)
    return idx, targets, torch.tensor([len(e.ids) for e in rows], device=device)


@torch.no_grad()
def pair_logprobs(model, encoded, pad_id: int, batch_size: int = 16,
                  share_prefix: bool = False) -> torch.Tensor:  # fmt: skip
    """(N, 2): log p(chosen answer | prompt) and log p(rejected answer | prompt) of every
    pair, summed over the answers' tokens, in eval mode and without gradients
    (``share_prefix``: see `lmlib.sft.logit_parts`)."""
    device = next(model.parameters()).device
    out = []
    with eval_mode(model):
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            idx, targets, _ = pair_batch(chunk, pad_id, device)
            logp = token_logprobs(model, idx, targets, share_prefix=share_prefix).sum(-1)
            out.append(logp.view(2, len(chunk)).T.cpu())  # (B, 2): chosen, rejected
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# A reward model


class RewardModel(nn.Module):
    """A decoder whose output layer (C -> V) is replaced by a scalar head (C -> 1): the
    reward of a conversation is the head's output at its last token.

    The head starts at zero, so every answer scores 0 until training. Works in place on
    ``model`` (our GPT or Llama): add LoRA first (`lmlib.finetune.add_lora` freezes the
    model), then wrap, so that the new head stays trainable.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        old = getattr(model, "lm_head", None)
        if not isinstance(old, nn.Linear):
            raise TypeError(f"model needs an nn.Linear lm_head to replace, got "
                            f"{type(old).__name__}")  # fmt: skip
        w = old.weight
        head = nn.Linear(old.in_features, 1, bias=False, device=w.device, dtype=w.dtype)
        nn.init.zeros_(head.weight)
        model.lm_head = head  # also unties it from the embedding, which keeps its weights
        self.model = model

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor,
                share_prefix: bool = False) -> torch.Tensor:  # fmt: skip
        """idx (B, T) padded at the end, lengths (B,) of the real tokens -> rewards (B,)."""
        head, tail = logit_parts(self.model, idx, share_prefix=share_prefix)  # (.., 1) each
        if head is not None:  # a (1, P) score per shared position: cheap to copy to each row
            tail = torch.cat([head.expand(len(idx), -1, -1), tail], dim=1)
        scores = tail[..., 0]  # (B, T): a score for every prefix of each row
        return scores[torch.arange(idx.size(0), device=idx.device), lengths - 1]  # (B,)

    def pair_loss(self, encoded, pad_id: int, share_prefix: bool = False):
        """Bradley-Terry loss on a batch of encoded pairs, and the rewards (B, 2)."""
        idx, _, lengths = pair_batch(encoded, pad_id, next(self.parameters()).device)
        rewards = self(idx, lengths, share_prefix).view(2, len(encoded))  # (2, B) chosen, rejected
        return bradley_terry_loss(rewards[0], rewards[1]), rewards.T.detach()

    @torch.no_grad()
    def score_pairs(self, encoded, pad_id: int, batch_size: int = 16,
                    share_prefix: bool = False) -> torch.Tensor:  # fmt: skip
        """(N, 2): the rewards of every pair's chosen and rejected answer."""
        with eval_mode(self):
            chunks = [encoded[i : i + batch_size] for i in range(0, len(encoded), batch_size)]
            return torch.cat([self.pair_loss(c, pad_id, share_prefix)[1].cpu() for c in chunks])


# --------------------------------------------------------------------------------------------
# DPO


@contextmanager
def lora_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block every `lmlib.finetune.LoRALinear` of ``model`` computes its frozen
    base layer alone: the model is the reference it started from. Restored on the way out.

    >>> layer = LoRALinear(nn.Linear(2, 2), r=1, alpha=1)
    >>> _ = nn.init.ones_(layer.lora_B.weight)  # as if trained: the layer has changed
    >>> x = torch.ones(1, 2)
    >>> with lora_disabled(layer):
    ...     torch.equal(layer(x), layer.base(x))
    True
    >>> torch.equal(layer(x), layer.base(x))
    False
    """
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    if not layers:
        raise ValueError("model has no LoRA layers to switch off (lmlib.finetune.add_lora)")
    saved = [m.scaling for m in layers]
    try:
        for m in layers:
            m.scaling = 0.0  # base(x) + 0 * update: exactly the base layer's output
        yield model
    finally:
        for m, scaling in zip(layers, saved, strict=True):
            m.scaling = scaling


@dataclass
class DPOOutput:
    """What `dpo_loss` returns; the rewards are DPO's implicit ones, beta times log-ratios."""

    loss: torch.Tensor  # mean over pairs of -log sigmoid(chosen_rewards - rejected_rewards)
    chosen_rewards: torch.Tensor  # (B,) beta * (log pi(chosen) - log pi_ref(chosen))
    rejected_rewards: torch.Tensor  # (B,) beta * (log pi(rejected) - log pi_ref(rejected))

    @property
    def margins(self) -> torch.Tensor:
        return self.chosen_rewards - self.rejected_rewards  # (B,)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float = 0.1) -> DPOOutput:  # fmt: skip
    """The DPO loss of Rafailov et al. (2023), eq. 7, from summed log-probabilities (B,):

        -log sigmoid(beta * [(log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))])

    Bradley-Terry (`bradley_terry_loss`) on the implicit rewards. A worked example with
    beta = 0.5: the policy raised the chosen answer by 1 nat and lowered the rejected one by
    1 nat, so the margin is 0.5 * (1 - (-1)) = 1 and the loss -log sigmoid(1) = 0.3133.

    >>> out = dpo_loss(torch.tensor([-4.0]), torch.tensor([-6.0]), torch.tensor([-5.0]),
    ...                torch.tensor([-5.0]), beta=0.5)
    >>> out.loss, out.chosen_rewards, out.rejected_rewards
    (tensor(0.3133), tensor([0.5000]), tensor([-0.5000]))
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    loss = bradley_terry_loss(chosen_rewards, rejected_rewards)
    return DPOOutput(loss, chosen_rewards.detach(), rejected_rewards.detach())


@dataclass
class ReferenceComparison:
    """A policy and its reference on the same pairs (`compare_to_reference`)."""

    policy: torch.Tensor  # (N, 2) log pi of the chosen and the rejected answer
    reference: torch.Tensor  # (N, 2) log pi_ref of the same answers
    kl: float  # mean KL(pi || pi_ref) of the next-token distributions along the answers

    @property
    def log_ratios(self) -> torch.Tensor:
        return self.policy - self.reference  # (N, 2)

    def margins(self, beta: float) -> torch.Tensor:
        """(N,) DPO's implicit reward margins, beta * (log-ratio chosen - log-ratio rejected)."""
        return beta * (self.log_ratios[:, 0] - self.log_ratios[:, 1])


@torch.no_grad()
def compare_to_reference(model, encoded, pad_id: int, batch_size: int = 16,
                         share_prefix: bool = False) -> ReferenceComparison:  # fmt: skip
    """One pass of ``model`` and one with its LoRA switched off over every encoded pair:
    the answers' log-probabilities under both, and the mean KL divergence per answer token
    (in nats), ``sum_v pi(v) (log pi(v) - log pi_ref(v))`` at each position that predicts
    an answer token. The reference is exact here, not sampled: both distributions are known.
    """
    device = next(model.parameters()).device
    policy, reference, kl_sum, n_tokens = [], [], 0.0, 0
    with eval_mode(model):
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            idx, targets, _ = pair_batch(chunk, pad_id, device)
            rows, ids, logits = answer_logits(model, idx, targets, share_prefix)
            with lora_disabled(model):
                ref_logits = answer_logits(model, idx, targets, share_prefix)[2]
            logp, logq = logits.float().log_softmax(-1), ref_logits.float().log_softmax(-1)
            kl_sum += (logp.exp() * (logp - logq)).sum().item()  # (n, V) summed
            n_tokens += len(ids)
            for logs, out in ((logp, policy), (logq, reference)):
                picked = logs.gather(-1, ids[:, None]).squeeze(-1)  # (n,)
                sums = torch.zeros(len(idx), device=device).index_add_(0, rows, picked)
                out.append(sums.view(2, len(chunk)).T.cpu())  # (B, 2): chosen, rejected
    return ReferenceComparison(torch.cat(policy), torch.cat(reference), kl_sum / n_tokens)
