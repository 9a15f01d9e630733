"""LoRA, adapters and prompt tuning on tiny random models (lmlib.finetune).

Every method must start as "no change" (same logits as the frozen model), train only its own
parameters, and agree with a reference: LoRA with `peft` given the same A and B, a merged
LoRA with the unmerged one, prompt tuning with the plain model on the concatenated sequence.
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.finetune import (
    Adapter,
    LoRALinear,
    PromptTuning,
    add_adapters,
    add_lora,
    chosen_blocks,
    freeze,
    merge_lora,
    name_ends_with,
    parameter_summary,
    replace_modules,
    trainable_parameters,
)
from lmlib.model import GPT, GPTConfig, Llama, LlamaConfig

V, C, L, NH, NKV, R = 99, 32, 2, 4, 2, 4


def make(kind):
    torch.manual_seed(0)
    if kind == "gpt":
        config = GPTConfig(block_size=64, vocab_size=V, n_layers=L, n_heads=NH, d_model=C)
        return GPT(config).eval()
    config = LlamaConfig(vocab_size=V, block_size=64, n_layers=L, n_heads=NH, n_kv_heads=NKV,
                         d_model=C, hidden=64, tie_embeddings=False)  # fmt: skip
    return Llama(config).eval()


@pytest.fixture(params=["gpt", "llama"])
def model(request):
    return make(request.param)


def lora_targets(model):
    return ("c_attn",) if isinstance(model, GPT) else ("q_proj", "v_proj")


def ids(B=2, T=12, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def trainable_names(model):
    return [n for n, p in model.named_parameters() if p.requires_grad]


def test_freeze_and_summary(model):
    total = sum(p.numel() for p in model.parameters())
    assert trainable_parameters(model) == total
    assert trainable_parameters(freeze(model)) == 0
    assert parameter_summary(model) == f"trainable 0 of {total:,} parameters (0.00%)"


def test_lora_linear_by_hand():
    base = torch.nn.Linear(3, 2)
    lora = LoRALinear(base, r=1, alpha=2)  # scaling 2
    with torch.no_grad():
        lora.lora_A.weight.copy_(torch.tensor([[1.0, 0.0, 1.0]]))
        lora.lora_B.weight.copy_(torch.tensor([[1.0], [-1.0]]))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    # A x = 1 + 3 = 4, B A x = (4, -4), times 2 = (8, -8)
    assert torch.allclose(lora(x), base(x) + torch.tensor([[8.0, -8.0]]))
    assert not base.weight.requires_grad and lora.lora_A.weight.requires_grad


@torch.no_grad()
def test_lora_starts_as_the_base_model_and_trains_only_a_and_b(model):
    x = ids()
    want = model(x).logits
    add_lora(model, lora_targets(model), r=R, alpha=8)
    assert torch.equal(model(x).logits, want)  # B = 0: exactly no change
    names = trainable_names(model)
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    wrapped = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert len(wrapped) == L * len(lora_targets(model))
    want_count = sum(R * (m.base.in_features + m.base.out_features) for m in wrapped)
    assert trainable_parameters(model) == want_count


def test_lora_dotted_target_and_unknown_target():
    gpt = make("gpt")
    add_lora(gpt, ("attn.c_proj",))
    assert isinstance(gpt.transformer.h[0].attn.c_proj, LoRALinear)
    assert not isinstance(gpt.transformer.h[0].mlp.c_proj, LoRALinear)
    with pytest.raises(ValueError, match="no nn.Linear"):
        add_lora(make("llama"), ("nope",))


def test_lora_in_chosen_blocks_only(model):
    every = chosen_blocks(model)
    add_lora(model, lora_targets(model), r=R, blocks=[-1])
    wrapped = [[isinstance(m, LoRALinear) for m in b.modules()] for b in every]
    assert not any(wrapped[0]) and any(wrapped[-1])
    # r (in + out) per wrapped layer: GPT-2's c_attn is C -> 3C; Llama's q is C -> C and
    # v is C -> C * NKV / NH (grouped-query attention)
    per_block = R * 4 * C if isinstance(model, GPT) else R * (2 * C) + R * (C + C * NKV // NH)
    assert trainable_parameters(model) == per_block


def test_lora_by_blocks_equals_lora_by_names():
    by_blocks, by_names = make("llama"), make("llama")
    torch.manual_seed(3)
    add_lora(by_blocks, ("q_proj", "v_proj"), r=R, blocks=range(1, L))
    torch.manual_seed(3)
    add_lora(by_names, [f"blocks.{i}.attn.{n}" for i in range(1, L) for n in ("q_proj", "v_proj")],
             r=R)  # fmt: skip
    assert [n for n, _ in by_blocks.named_modules()] == [n for n, _ in by_names.named_modules()]
    for a, b in zip(by_blocks.parameters(), by_names.parameters(), strict=True):
        assert torch.equal(a, b)  # the same layers, wrapped in the same order


@pytest.mark.parametrize("blocks, error, match", [
    ([L], ValueError, r"each of blocks must be an int in \[-2, 1\], got 2"),
    ([0, -L], ValueError, "each once"),
    ([], ValueError, "at least one block"),
    (1, TypeError, "block indices such as range"),
    ("0", TypeError, "block indices such as range"),
    ([0.5], TypeError, "each of blocks must be an int"),
])  # fmt: skip
def test_bad_blocks_are_refused_before_anything_changes(model, blocks, error, match):
    for add in (lambda m: add_lora(m, lora_targets(m), blocks=blocks),
                lambda m: add_adapters(m, blocks=blocks)):  # fmt: skip
        with pytest.raises(error, match=match):
            add(model)
        assert trainable_parameters(model) == sum(p.numel() for p in model.parameters())


def test_blocks_as_a_generator_are_read_once(model):
    assert len(chosen_blocks(model, (i for i in [-1]))) == 1
    with pytest.raises(ValueError, match=r"each once, got \[0, 0\]"):  # the indices it read
        chosen_blocks(model, (i for i in [0, 0]))


def test_lora_target_missing_from_the_chosen_blocks():
    with pytest.raises(ValueError, match=r"no nn.Linear in blocks \[0\] is named like"):
        add_lora(make("gpt"), ("blocks.1.attn.c_attn",), blocks=[0])


def test_replace_modules_and_whole_name_matching():
    net = nn.ModuleDict({"attn": nn.ModuleDict({"c_proj": nn.Linear(2, 2)}),
                         "mlp": nn.ModuleDict({"c_proj": nn.Linear(2, 2)}),
                         "xattn": nn.ReLU()})  # fmt: skip
    assert name_ends_with("attn.c_proj", ("attn.c_proj",))
    assert not name_ends_with("xattn", ("attn",)) and not name_ends_with("mlp.c_proj", ("attn",))

    def match(name, m):
        return isinstance(m, nn.Linear) and name_ends_with(name, ("c_proj",))

    assert replace_modules(net, match, lambda m: nn.Identity()) == 2
    assert isinstance(net.attn.c_proj, nn.Identity) and isinstance(net.mlp.c_proj, nn.Identity)
    assert replace_modules(net, match, lambda m: nn.Identity()) == 0  # none left
    # the module made for a match is not searched again: wrapping cannot recurse
    wrapped = nn.Sequential(nn.Linear(2, 2))
    assert replace_modules(wrapped, lambda n, m: isinstance(m, nn.Linear),
                           lambda m: nn.Sequential(m)) == 1  # fmt: skip
    assert isinstance(wrapped[0][0], nn.Linear)


@torch.no_grad()
def test_merged_lora_equals_unmerged(model):
    x = ids()
    base = model(x).logits
    add_lora(model, lora_targets(model), r=R, alpha=8)
    for m in model.modules():
        if isinstance(m, LoRALinear):
            m.lora_B.weight.normal_(std=0.1)
    unmerged = model(x).logits
    assert (unmerged - base).abs().max() > 1e-3  # the update really changes the model
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert (model(x).logits - unmerged).abs().max() <= 1e-5


@torch.no_grad()
@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers' deprecations, seen via peft
def test_lora_matches_peft():
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    from lmlib.convert import llama_from_hf

    torch.manual_seed(0)
    hf_config = transformers.LlamaConfig(
        vocab_size=V, hidden_size=C, intermediate_size=64, num_hidden_layers=L,
        num_attention_heads=NH, num_key_value_heads=NKV, max_position_embeddings=64,
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    hf = transformers.LlamaForCausalLM(hf_config).eval()
    ours = add_lora(llama_from_hf(hf).eval(), ("q_proj", "v_proj"), r=R, alpha=8)
    config = peft.LoraConfig(r=R, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    theirs = peft.get_peft_model(hf, config).eval()
    assert theirs.get_nb_trainable_parameters()[0] == trainable_parameters(ours)
    for i, block in enumerate(ours.blocks):
        for name in ("q_proj", "v_proj"):
            layer = getattr(theirs.base_model.model.model.layers[i].self_attn, name)
            for part in ("lora_A", "lora_B"):
                w = torch.randn_like(getattr(layer, part)["default"].weight) * 0.1
                getattr(layer, part)["default"].weight.copy_(w)
                getattr(getattr(block.attn, name), part).weight.copy_(w)
    x = ids()
    diff = (ours(x).logits - theirs(input_ids=x).logits).abs().max().item()
    assert diff <= 1e-5, f"logits differ from peft's by {diff:.2e}"


@torch.no_grad()
def test_adapters_start_as_identity_and_train_alone(model):
    x = ids()
    want = model(x).logits
    add_adapters(model, bottleneck=3)
    assert torch.equal(model(x).logits, want)
    attentions = model(x, return_attention=True).attentions  # blocks still return them
    assert len(attentions) == L and attentions[0].shape == (2, NH, 12, 12)
    names = trainable_names(model)
    assert names and all(".adapter." in n for n in names)
    assert trainable_parameters(model) == L * 2 * (C * 3 + 3 + 3 * C + C)
    for m in model.modules():
        if isinstance(m, Adapter):
            m.up.weight.normal_(std=0.1)
    assert (model(x).logits - want).abs().max() > 1e-3  # adapters are on the path


def test_adapters_in_the_last_block_only(model):
    every = chosen_blocks(model)
    add_adapters(model, bottleneck=3, blocks=range(L - 1, L))
    assert [sum(isinstance(m, Adapter) for m in b.modules()) for b in every] == [0] * (L - 1) + [2]
    assert trainable_parameters(model) == 2 * (C * 3 + 3 + 3 * C + C)


@torch.no_grad()
def test_prompt_tuning_equals_the_model_on_the_concatenation(model):
    prefix, x = torch.tensor([5, 17, 42]), ids()
    full = torch.cat([prefix.expand(2, 3), x], dim=1)  # (B, 3 + T)
    want = model(full).logits[:, 3:]
    wrapped = PromptTuning(model, 3, init_from_ids=prefix)
    targets = torch.cat([x[:, 1:], torch.full_like(x[:, :1], -100)], dim=1)
    out = wrapped(x, targets)
    assert out.logits.shape == (2, 12, V)
    assert (out.logits - want).abs().max() <= 1e-5
    want_loss = F.cross_entropy(want[:, :-1].reshape(-1, V), x[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, want_loss, atol=1e-5)
    assert trainable_names(wrapped) == ["prompt"] and trainable_parameters(wrapped) == 3 * C
    with pytest.raises(ValueError, match="block_size"):
        wrapped(ids(T=62))


def test_prompt_tuning_logits_at_the_real_tokens(model):
    wrapped = PromptTuning(model, 3, init_from_ids=[5, 17, 42])
    x = ids()
    targets = torch.full_like(x, -100)
    targets[0, 4], targets[1, -2:] = 8, x[1, -2:]
    full, part = wrapped(x, targets), wrapped(x, targets, logits_at=targets != -100)
    assert part.logits.shape == (3, V)
    torch.testing.assert_close(part.logits, full.logits[targets != -100], atol=1e-5, rtol=0)
    torch.testing.assert_close(part.loss, full.loss, atol=1e-6, rtol=1e-6)
    part.loss.backward()
    assert wrapped.prompt.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"logits_at must be a \(B, T\) = \(2, 12\) tensor"):
        wrapped(x, logits_at=targets[:, 1:] != -100)


def test_prompt_tuning_gradients_reach_only_the_virtual_tokens(model):
    wrapped = PromptTuning(model, 2, init_from_ids=[1, 2])
    x = ids()
    targets = torch.cat([x[:, 1:], torch.full_like(x[:, :1], -100)], dim=1)
    wrapped(x, targets).loss.backward()
    assert wrapped.prompt.grad is not None and wrapped.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
