"""Supervised fine-tuning data and log-probabilities (lmlib.sft).

The loss mask is checked through gradients (a prompt or template token's logits get none),
token by token on a character-level template, and on SmolLM2's own chat template (slow);
the shared-prefix path is checked against the plain forward pass, gradients included; the
one-pass greedy check against real greedy decoding.
"""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.finetune import add_lora
from lmlib.generate import generate
from lmlib.sft import (
    IGNORE,
    ChatTokens,
    answer_logits,
    common_prefix_length,
    encode_chat,
    fit,
    greedy_matches,
    logit_parts,
    pack,
    pad_batch,
    sft_loss,
    shared_prefix_logits,
    shift_labels,
    token_logprobs,
)


class Chars:
    """One token per character; each message is written ``<role>content|`` (| ends a turn)."""

    eos_token_id = ord("|")

    def encode(self, text, add_special_tokens=True):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(map(chr, ids))

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<{m['role']}>{m['content']}|" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


def conversation(*turns, system=None):
    roles = ["user", "assistant"] * len(turns)
    msgs = [{"role": r, "content": c} for r, c in zip(roles, turns, strict=False)]
    return ([{"role": "system", "content": system}] if system else []) + msgs


def shown(example):
    """The labelled characters, _ for the rest."""
    return "".join(chr(i) if lab != IGNORE else "_" for i, lab in zip(example.ids, example.labels))


def test_only_assistant_turns_carry_labels():
    example = encode_chat(Chars(), conversation("hi", "yo", "2+2?", "4", system="S"))
    assert (
        "".join(map(chr, example.ids))
        == "<system>S|<user>hi|<assistant>yo|<user>2+2?|<assistant>4|"
    )
    assert shown(example) == "_" * 30 + "yo|" + "_" * 22 + "4|"
    assert example.prompt_length == 30
    everything = encode_chat(Chars(), conversation("hi", "yo"), mask_prompt=False)
    assert everything.labels == everything.ids


def test_prompt_tokens_get_no_gradient(tiny_llama):
    """The loss's gradient reaches the logits only at positions that predict the reply."""
    example = encode_chat(Chars(), conversation("ab", "cd"))  # ids are < 128; vocab 99: remap
    ids = [i % 99 for i in example.ids]
    idx, targets = pad_batch([ChatTokens(ids, [i % 99 if lab != IGNORE else IGNORE
                                               for i, lab in zip(example.ids, example.labels)])],
                             pad_id=0)  # fmt: skip
    logits = tiny_llama(idx).logits.detach().requires_grad_(True)
    sft_loss(lambda idx, attention_mask=None: logits, idx, targets).backward()
    has_grad = logits.grad.abs().sum(-1)[0] > 0  # (T,)
    assert has_grad.tolist() == (targets[0] != IGNORE).tolist()
    assert has_grad.sum() == 3  # "c", "d" and the end of turn "|"


def test_sft_loss_is_lm_loss(tiny_model):
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 99, (3, 10), generator=g)
    targets = torch.randint(0, 99, (3, 10), generator=g)
    targets[:, :4] = IGNORE
    targets[1, 7:] = IGNORE
    expected = tiny_model(idx, targets).loss  # lmlib.model.lm_loss: F.cross_entropy
    assert torch.allclose(sft_loss(tiny_model, idx, targets), expected, atol=1e-6)
    logp = token_logprobs(tiny_model, idx, targets)
    assert logp[targets == IGNORE].eq(0).all() and logp[targets != IGNORE].lt(0).all()


def test_bad_conversations_are_clear_errors():
    with pytest.raises(ValueError, match="message 1 is an empty assistant turn"):
        encode_chat(Chars(), conversation("hi", "  "))
    with pytest.raises(ValueError, match="need an assistant turn"):
        encode_chat(Chars(), [{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="prompt before message 1 takes 28 tokens"):
        encode_chat(Chars(), conversation("a" * 10, "b"), max_len=20)
    with pytest.raises(ValueError, match="conversation takes 30 tokens"):
        encode_chat(Chars(), conversation("a" * 10, "b"), max_len=29)
    with pytest.raises(ValueError, match="list of"):
        encode_chat(Chars(), "hi")
    assert len(encode_chat(Chars(), conversation("a" * 10, "b"), max_len=30).ids) == 30


def test_shift_and_pad():
    assert shift_labels([1, 2, 3]) == [2, 3, IGNORE]
    idx, targets = pad_batch([ChatTokens([1, 2], [IGNORE, 2]), ChatTokens([3], [3])], pad_id=9)
    assert idx.tolist() == [[1, 2], [3, 9]]
    assert targets.tolist() == [[2, IGNORE], [IGNORE, IGNORE]]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=12), st.integers(12, 20))
def test_pack_keeps_every_label_within_its_example(lengths, block_size):
    examples = []
    for k, n in enumerate(lengths):  # token ids tell which example they come from
        ids = [100 * k + t for t in range(n)]
        examples.append(ChatTokens(ids, [IGNORE] * (n // 2) + ids[n // 2 :]))
    idx, targets = pack(examples, block_size, pad_id=-1)
    assert idx.size(1) == block_size and idx.size(0) <= len(examples)
    real = idx[idx >= 0].tolist()
    assert sorted(real) == sorted(i for e in examples for i in e.ids)  # none lost, none cut
    labelled = [(int(a), int(b)) for a, b in zip(idx.flatten(), targets.flatten()) if b != IGNORE]
    assert all(b == a + 1 for a, b in labelled)  # each predicts its own example's next token
    assert len(labelled) == sum(len(shift_labels(e.labels)) - shift_labels(e.labels).count(IGNORE)
                                for e in examples)  # fmt: skip


def test_pack_rejects_an_example_longer_than_a_row():
    with pytest.raises(ValueError, match="example of 5 tokens"):
        pack([ChatTokens([1] * 5, [1] * 5)], block_size=4, pad_id=0)


def test_common_prefix_length():
    assert common_prefix_length(torch.tensor([[1, 2, 3], [1, 2, 3]])) == 3
    assert common_prefix_length(torch.tensor([[1, 2], [2, 2]])) == 0


def test_shared_prefix_matches_the_full_forward_pass(tiny_model):
    """Same logits, and the same LoRA gradients, with the prefix run once through a cache."""
    model = add_lora(copy.deepcopy(tiny_model), ("c_attn", "q_proj", "v_proj"), r=2)
    for m in model.modules():
        if hasattr(m, "lora_B"):
            torch.nn.init.normal_(m.lora_B.weight, std=0.5)
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(0, 99, (1, 6), generator=g).expand(4, -1)
    idx = torch.cat([prefix, torch.randint(0, 99, (4, 5), generator=g)], dim=1)  # (4, 11)
    targets = torch.randint(0, 99, (4, 11), generator=g)
    head, tail = shared_prefix_logits(model, idx, 6)
    full = model(idx).logits
    assert head.shape == (1, 6, 99) and tail.shape == (4, 5, 99)
    assert torch.allclose(torch.cat([head.expand(4, -1, -1), tail], 1), full, atol=1e-5)

    def grads(share):
        model.zero_grad()
        sft_loss(model, idx, targets, share_prefix=share).backward()
        return [p.grad.clone() for p in model.parameters() if p.requires_grad]

    for a, b in zip(grads(True), grads(False), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert logit_parts(model, idx, share_prefix=True)[0].shape == (1, 6, 99)
    assert logit_parts(model, idx)[0] is None
    with pytest.raises(ValueError, match="differ between rows"):
        shared_prefix_logits(model, idx, 7)


def test_greedy_matches_is_greedy_decoding(tiny_model):
    """One forward pass says whether greedy generation reproduces the labelled reply."""
    prompts = torch.tensor([[5, 6, 7, 8], [5, 6, 9, 10]])
    out = generate(tiny_model, prompts, max_new_tokens=4)  # greedy: (2, 8)
    targets = torch.full_like(out, IGNORE)
    targets[:, 3:-1] = out[:, 4:]  # the reply's 4 tokens, predicted from positions 3..6
    assert greedy_matches(tiny_model, out, targets).tolist() == [True, True]
    assert greedy_matches(tiny_model, out, targets, share_prefix=True).tolist() == [True, True]
    wrong = out.clone()
    wrong[1, 6] = (wrong[1, 6] + 1) % 99  # the reply's third token, another one
    wrong_targets = targets.clone()
    wrong_targets[1, 5] = wrong[1, 6]
    assert greedy_matches(tiny_model, wrong, wrong_targets).tolist() == [True, False]


def test_fit_trains_lora_on_the_reply(tiny_llama):
    """A few steps of SFT make a fixed reply much more likely; only LoRA's weights move."""
    torch.manual_seed(0)
    linears = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    model = add_lora(copy.deepcopy(tiny_llama), linears, r=4)
    example = ChatTokens([1, 2, 3, 4, 5, 6], [IGNORE, IGNORE, IGNORE, 4, 5, 6])
    idx, targets = pad_batch([example], pad_id=0)
    before = sft_loss(model, idx, targets).item()
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    fit(model, lambda m, g: sft_loss(m, idx, targets), steps=30, lr=2e-2, progress=False)
    assert sft_loss(model, idx, targets).item() < 0.25 * before
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert not model.training
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(copy.deepcopy(tiny_llama).requires_grad_(False), None, steps=1, lr=1.0)


@pytest.mark.slow
def test_smollm2_chat_template_masks_everything_but_the_reply():
    """On SmolLM2's ChatML template: the ids are the template's own, and the labels cover
    exactly the assistant's text and its <|im_end|> (plus the newline the template adds)."""
    pytest.importorskip("transformers")
    from lmlib.pretrained import load_smollm2

    _, tok = load_smollm2()
    messages = conversation("What is 2 + 2?", "4", "And 3 + 3?", "6")
    example = encode_chat(tok, messages)
    assert example.ids == tok.apply_chat_template(messages, tokenize=True, return_dict=False)
    learned = [tok.decode([i]) for i, lab in zip(example.ids, example.labels) if lab != IGNORE]
    assert learned == ["4", "<|im_end|>", "\n", "6", "<|im_end|>", "\n"]
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert example.ids[: example.prompt_length] == tok.encode(prompt)


def test_answer_logits_are_the_labelled_rows_of_the_full_logits(tiny_model):
    """Labelled positions inside the shared prefix (an unmasked prompt) and after it."""
    g = torch.Generator().manual_seed(2)
    idx = torch.cat([torch.randint(0, 99, (1, 5), generator=g).expand(3, -1),
                     torch.randint(0, 99, (3, 4), generator=g)], dim=1)  # fmt: skip
    targets = torch.full_like(idx, IGNORE)
    targets[:, 2] = 7  # inside the shared prefix
    targets[1, 6:8] = torch.tensor([3, 4])
    full = tiny_model(idx).logits
    for share, head_rows in ((False, [5]), (True, [1, 2])):
        ran = []  # the output layer's rows at each call: only the labelled positions
        hook = tiny_model.lm_head.register_forward_hook(lambda m, a, o, r=ran: r.append(len(o)))
        rows, ids, logits = answer_logits(tiny_model, idx, targets, share_prefix=share)
        hook.remove()
        assert ran == head_rows  # shared: position 2 once for every row, then 2 of row 1
        assert rows.tolist() == [0, 1, 1, 1, 2] and ids.tolist() == [7, 7, 3, 4, 7]
        expected = full[targets != IGNORE]  # row-major, as answer_logits
        assert torch.allclose(logits, expected, atol=1e-5)
