"""Bradley-Terry, the reward model and DPO (lmlib.preference).

DPO's loss is checked by hand and against `trl`'s DPOTrainer on the same log-probabilities;
the LoRA reference against the model before LoRA; the reward model by training it.
"""

import copy
import types
from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F

from lmlib.finetune import add_lora
from lmlib.preference import (
    PreferencePair,
    RewardModel,
    bradley_terry_loss,
    compare_to_reference,
    dpo_loss,
    encode_pairs,
    lora_disabled,
    pair_batch,
    pair_logprobs,
    pairwise_accuracy,
)
from lmlib.sft import IGNORE, ChatTokens, token_logprobs

LINEARS = ("c_attn", "c_proj", "q_proj", "v_proj", "o_proj", "up_proj")


def lora(model, std=0.3, seed=0):
    """``model`` with LoRA whose B is random: a policy that has moved from its reference."""
    torch.manual_seed(seed)
    model = add_lora(copy.deepcopy(model), LINEARS, r=2)
    for m in model.modules():
        if hasattr(m, "lora_B"):
            torch.nn.init.normal_(m.lora_B.weight, std=std)
    return model


class Bytes:
    """A tokenizer for vocab 99: one token per character (code point mod 99)."""

    eos_token_id = ord("|") % 99

    def encode(self, text, add_special_tokens=True):
        return [ord(c) % 99 for c in text]

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<{m['role'][0]}>{m['content']}|" for m in messages)
        return text + ("<a>" if add_generation_prompt else "")


def test_bradley_terry_by_hand():
    assert torch.isclose(bradley_terry_loss(torch.zeros(3), torch.zeros(3)), torch.tensor(0.6931),
                         atol=1e-4)  # fmt: skip
    margin = torch.tensor([1.0, -2.0])
    expected = (torch.log1p(torch.exp(-margin))).mean()  # -log sigmoid(m) = log(1 + e^-m)
    assert torch.isclose(bradley_terry_loss(margin, torch.zeros(2)), expected)
    assert pairwise_accuracy(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 1.0])) == 0.5
    with pytest.raises(ValueError, match="one shape"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))


def test_dpo_loss_by_hand():
    # beta 0.1; chosen: policy -10 vs reference -12 (+2 nats), rejected: -15 vs -14 (-1 nat)
    out = dpo_loss(torch.tensor([-10.0]), torch.tensor([-15.0]), torch.tensor([-12.0]),
                   torch.tensor([-14.0]), beta=0.1)  # fmt: skip
    assert torch.allclose(out.chosen_rewards, torch.tensor([0.2]))
    assert torch.allclose(out.rejected_rewards, torch.tensor([-0.1]))
    assert torch.allclose(out.margins, torch.tensor([0.3]))
    assert torch.isclose(out.loss, -torch.log(torch.sigmoid(torch.tensor(0.3))))  # 0.5544
    assert round(out.loss.item(), 4) == 0.5544
    # the policy equal to the reference: every reward 0, the loss log 2, whatever beta
    same = torch.tensor([-3.0, -7.0])
    assert torch.isclose(dpo_loss(same, same + 1, same, same + 1, beta=5.0).loss,
                         torch.log(torch.tensor(2.0)))  # fmt: skip
    with pytest.raises(ValueError, match="beta must be > 0"):
        dpo_loss(same, same, same, same, beta=0.0)


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    logp = torch.tensor([-5.0, -5.0], requires_grad=True)  # chosen, rejected
    dpo_loss(logp[:1], logp[1:], torch.tensor([-5.0]), torch.tensor([-5.0]), 0.1).loss.backward()
    assert logp.grad[0] < 0 < logp.grad[1]  # descent raises chosen, lowers rejected
    assert torch.allclose(logp.grad, torch.tensor([-0.05, 0.05]))  # beta * sigmoid(0) = 0.05


def trl_dpo_loss(per_token, completion_mask, ref_chosen, ref_rejected, beta):
    """trl's DPOTrainer._compute_loss (loss_type "sigmoid", precomputed reference
    log-probabilities) run on given per-token log-probabilities; returns (loss, metrics)."""
    from trl.trainer.dpo_trainer import DPOTrainer

    n = per_token.size(0)

    def model(**kwargs):  # stands in for the policy: returns the log-probabilities given
        zeros = torch.zeros_like(per_token)
        return types.SimpleNamespace(log_probs=per_token * completion_mask[:, 1:], entropy=zeros,
                                     mean_logits=zeros, is_top1=zeros.bool())  # fmt: skip

    model.training = True
    accelerator = types.SimpleNamespace(device="cpu", gather_for_metrics=lambda x: x,
                                        gather=lambda x: x)  # fmt: skip
    trainer = types.SimpleNamespace(
        model=model, accelerator=accelerator, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=["sigmoid"],
        loss_weights=[1.0], beta=beta, label_smoothing=0.0, use_weighting=False,
        _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1,
    )  # fmt: skip
    inputs = {"input_ids": torch.zeros(completion_mask.shape, dtype=torch.long),
              "attention_mask": torch.ones_like(completion_mask), "completion_mask":
              completion_mask, "ref_chosen_logps": ref_chosen,
              "ref_rejected_logps": ref_rejected}  # fmt: skip
    assert n % 2 == 0
    loss = DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
    return loss, trainer._metrics["train"]


@pytest.mark.slow  # importing trl (transformers' Trainer, datasets) takes ~12 s
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_matches_trl(beta):
    pytest.importorskip("trl")
    g = torch.Generator().manual_seed(0)
    B, T = 4, 7
    per_token = -3 * torch.rand(2 * B, T - 1, generator=g)  # B chosen rows, then B rejected
    completion_mask = torch.zeros(2 * B, T, dtype=torch.long)
    for row, start in enumerate([2, 3, 2, 4, 1, 2, 5, 3]):  # the prompt ends at `start`
        completion_mask[row, start:] = 1
    ref_chosen, ref_rejected = -20 * torch.rand(B, generator=g), -20 * torch.rand(B, generator=g)
    loss, metrics = trl_dpo_loss(per_token, completion_mask, ref_chosen, ref_rejected, beta)
    logps = (per_token * completion_mask[:, 1:]).sum(1)  # (2B,) one number per answer
    ours = dpo_loss(logps[:B], logps[B:], ref_chosen, ref_rejected, beta)
    assert abs(ours.loss.item() - loss.item()) < 1e-6
    assert abs(ours.margins.mean().item() - metrics["rewards/margins"][0]) < 1e-6
    assert abs(ours.chosen_rewards.mean().item() - metrics["rewards/chosen"][0]) < 1e-6
    # a loss with the reference's sign flipped is a different number: the check can fail
    flipped = dpo_loss(logps[:B], logps[B:], -ref_chosen, -ref_rejected, beta)
    assert abs(flipped.loss.item() - loss.item()) > 1e-3


def test_preference_pairs_are_checked():
    with pytest.raises(ValueError, match="identical"):
        PreferencePair("Say hi", "Hello!", " Hello! ")
    with pytest.raises(ValueError, match="chosen must be a non-empty string"):
        PreferencePair("Say hi", "  ", "Hello")
    pair = PreferencePair("q", "yes", "no", system="s")
    assert [m["role"] for m in pair.messages("yes")] == ["system", "user", "assistant"]


def test_pair_batch_and_logprobs(tiny_llama):
    pairs = [PreferencePair("ab", "cd", "e"), PreferencePair("fgh", "i", "jkl")]
    encoded = encode_pairs(Bytes(), pairs)
    idx, targets, lengths = pair_batch(encoded, pad_id=0)
    assert idx.shape[0] == 4 and lengths.tolist() == [len(c.ids) for c, _ in encoded] + [
        len(r.ids) for _, r in encoded]  # fmt: skip
    assert ((targets != IGNORE).sum(1) == torch.tensor([3, 2, 2, 4])).all()  # answer + "|"
    scores = pair_logprobs(tiny_llama, encoded, pad_id=0)  # (N, 2)
    per_token = -F.cross_entropy(tiny_llama(idx).logits.transpose(1, 2), targets,
                                 reduction="none")  # fmt: skip
    assert torch.allclose(scores, per_token.sum(1).view(2, 2).T, atol=1e-5)
    assert torch.allclose(pair_logprobs(tiny_llama, encoded, 0, share_prefix=True), scores,
                          atol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="12 tokens, more than max_len=11"):
        encode_pairs(Bytes(), pairs, max_len=11)


def test_lora_disabled_is_the_model_before_lora(tiny_model):
    idx = torch.randint(0, 99, (2, 9), generator=torch.Generator().manual_seed(0))
    policy = lora(tiny_model)
    assert not torch.allclose(policy(idx).logits, tiny_model(idx).logits, atol=1e-3)
    with lora_disabled(policy):
        assert torch.equal(policy(idx).logits, tiny_model(idx).logits)
    assert not torch.allclose(policy(idx).logits, tiny_model(idx).logits, atol=1e-3)
    with pytest.raises(ValueError, match="no LoRA layers"):
        with lora_disabled(tiny_model):
            pass


def test_compare_to_reference(tiny_llama):
    """Log-probabilities under the policy and the reference, and the KL along the answers,
    against a plain computation on the full (B, T, V) logits."""
    encoded = encode_pairs(Bytes(), [PreferencePair("ab", "cd", "e"),
                                     PreferencePair("fgh", "i", "jkl")])  # fmt: skip
    same = compare_to_reference(lora(tiny_llama, std=0.0), encoded, pad_id=0)
    assert same.kl == 0.0 and torch.equal(same.policy, same.reference)  # B = 0: the reference
    policy = lora(tiny_llama)
    out = compare_to_reference(policy, encoded, pad_id=0, batch_size=1)
    assert torch.allclose(out.policy, pair_logprobs(policy, encoded, 0), atol=1e-5)
    assert torch.allclose(out.reference, pair_logprobs(tiny_llama, encoded, 0), atol=1e-5)
    assert torch.allclose(out.margins(0.5), 0.5 * (out.log_ratios[:, 0] - out.log_ratios[:, 1]))
    kls = []
    for pair in encoded:
        idx, targets, _ = pair_batch([pair], pad_id=0)
        p = policy(idx).logits.log_softmax(-1)
        q = tiny_llama(idx).logits.log_softmax(-1)
        kl = F.kl_div(q, p, log_target=True, reduction="none").sum(-1)  # KL(p || q) per position
        kls.append(kl[targets != IGNORE])
    assert abs(out.kl - torch.cat(kls).mean().item()) < 1e-5 and out.kl > 0
    shared = compare_to_reference(policy, encoded, pad_id=0, share_prefix=True)
    assert abs(shared.kl - out.kl) < 1e-5 and torch.allclose(shared.policy, out.policy, atol=1e-5)


def test_reward_model_learns_a_preference(tiny_llama):
    """Chosen answers end in token 7, rejected ones in 8: a few steps separate them."""
    torch.manual_seed(0)
    model = add_lora(copy.deepcopy(tiny_llama), ("q_proj", "v_proj", "o_proj", "down_proj"), r=4)
    rm = RewardModel(model)
    assert [n for n, p in rm.named_parameters() if p.requires_grad][-1] == "model.lm_head.weight"
    g = torch.Generator().manual_seed(0)

    def pair(seed):
        prompt = torch.randint(10, 99, (5,), generator=g).tolist()
        return (ChatTokens(prompt + [7], [IGNORE] * 5 + [7]),
                ChatTokens(prompt + [8], [IGNORE] * 5 + [8]))  # fmt: skip

    pairs = [pair(i) for i in range(16)]
    scores = rm.score_pairs(pairs, pad_id=0)
    assert scores.eq(0).all()  # the zero head: no opinion yet
    assert pairwise_accuracy(scores[:, 0], scores[:, 1]) == 0.5
    optimizer = torch.optim.AdamW([p for p in rm.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(40):
        loss, _ = rm.pair_loss(pairs[:8], pad_id=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scores = rm.score_pairs(pairs[8:], pad_id=0)  # pairs it never saw
    assert pairwise_accuracy(scores[:, 0], scores[:, 1]) == 1.0
    assert torch.allclose(rm.score_pairs(pairs[8:], 0, share_prefix=True), scores, atol=1e-5)
    with pytest.raises(TypeError, match="lm_head"):
        RewardModel(torch.nn.Linear(2, 2))


def test_dpo_training_prefers_the_chosen_answers(tiny_llama):
    """DPO steps on one batch raise the chosen answers over the rejected ones, relative to the
    reference, which stays the model with LoRA off."""
    encoded = encode_pairs(Bytes(), [PreferencePair("ab", "yes", "no"),
                                     PreferencePair("cd", "ok", "nah")])  # fmt: skip
    policy = lora(tiny_llama, std=0.0)
    with lora_disabled(policy):
        ref = pair_logprobs(policy, encoded, pad_id=0)
    idx, targets, _ = pair_batch(encoded, pad_id=0)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(10):
        logps = token_logprobs(policy, idx, targets).sum(1)
        out = dpo_loss(logps[:2], logps[2:], ref[:, 0], ref[:, 1], beta=0.5)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    after = pair_logprobs(policy, encoded, pad_id=0)
    margins = (after[:, 0] - ref[:, 0]) - (after[:, 1] - ref[:, 1])
    assert (margins > 0).all() and out.loss.item() < 0.6931
