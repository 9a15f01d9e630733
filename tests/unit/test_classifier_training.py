"""Training classifiers (lmlib.classifier_training) on tiny random models: every fine-tuning
method lowers the loss on the label words and leaves the caller's model alone, and
`finetune_classifier` equals a hand-written AdamW loop on the same batches, bit for bit; an
encoder with a head pools only real tokens. One slow test runs the real SmolLM2.
"""

import copy
import random

import pytest
import torch

from lmlib.classifier_training import (
    EncoderClassifier,
    finetune_classifier,
    train_encoder_classifier,
)
from lmlib.classify import classify, label_word_logprobs, right_pad
from lmlib.data import LabeledSentence
from lmlib.finetune import add_lora
from lmlib.model import GPT, GPTConfig, Llama, LlamaConfig

V, C, L, NH, NKV = 99, 32, 2, 4, 2


class CharTokenizer:
    """One token per character (code point mod V), so " yes" is four tokens."""

    def encode(self, text, add_special_tokens=True):
        return [ord(c) % V for c in text]


@pytest.fixture(params=["gpt", "llama"])
def model(request):
    torch.manual_seed(0)
    if request.param == "gpt":
        config = GPTConfig(block_size=64, vocab_size=V, n_layers=L, n_heads=NH, d_model=C)
        return GPT(config).eval()
    config = LlamaConfig(vocab_size=V, block_size=64, n_layers=L, n_heads=NH, n_kv_heads=NKV,
                         d_model=C, hidden=64, tie_embeddings=False)  # fmt: skip
    return Llama(config).eval()


def lora_targets(model):
    return ("c_attn",) if isinstance(model, GPT) else ("q_proj", "v_proj")


TRAIN = [LabeledSentence("good fun", 1), LabeledSentence("dull", 0),
         LabeledSentence("a joy", 1), LabeledSentence("bad , bad", 0)]  # fmt: skip


@pytest.mark.parametrize("method", ["lora", "adapter", "prompt", "full"])
def test_finetune_classifier_lowers_the_loss_and_leaves_the_model_alone(model, method):
    before = copy.deepcopy(model.state_dict())
    r = finetune_classifier(model, CharTokenizer(), method, TRAIN, TRAIN, steps=3,
                            batch_size=4, lr=1e-2, template="{sentence} :",
                            label_words=(" no", " yes"), r=2, bottleneck=2,
                            n_virtual_tokens=2)  # fmt: skip
    assert r["losses"][-1] < r["losses"][0]  # the same 4 examples every step
    assert r["eval_loss_after"] < r["eval_loss_before"]  # and eval = train here
    assert 0 < r["trainable_params"] <= r["total_params"]
    assert (r["trainable_params"] == r["total_params"]) == (method == "full")
    assert 0 <= r["accuracy_before"] <= 1 and 0 <= r["accuracy_after"] <= 1
    assert r["seconds"] > 0 and r["peak_memory_mb"] > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.requires_grad for p in model.parameters())  # the copy was frozen, not this
    assert "model" not in r


def test_finetune_classifier_equals_a_hand_written_adamw_loop(model):
    """The reference is the loop the book's recorded runs used: AdamW without weight decay,
    the rate falling linearly to zero, a batch of random rows per step, no clipping."""
    tok, steps, lr, seed = CharTokenizer(), 4, 1e-2, 3
    r = finetune_classifier(model, tok, "lora", TRAIN, TRAIN, steps=steps, batch_size=2,
                            lr=lr, template="{sentence} :", label_words=(" no", " yes"), r=2,
                            seed=seed, keep_model=True)  # fmt: skip
    torch.manual_seed(seed)
    ref = add_lora(copy.deepcopy(model), lora_targets(model), r=2, alpha=16)
    params = [p for p in ref.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    rng, losses = random.Random(seed), []
    ref.train()
    for _ in range(steps):
        seqs, targets = [], []
        for ex in rng.sample(TRAIN, 2):
            p, w = tok.encode(f"{ex.sentence} :"), tok.encode((" no", " yes")[ex.label])
            seqs.append(p + w)
            targets.append([-100] * (len(p) - 1) + w + [-100])
        loss = ref(right_pad(seqs), right_pad(targets, fill=-100)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    # finetune_classifier computes the output layer at the label words only (logits_at) and
    # uses the fused AdamW kernel: the same sums in another order, so equal up to rounding
    torch.testing.assert_close(r["losses"], losses, atol=1e-6, rtol=1e-6)
    trained = r["model"].state_dict()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(trained[k], v, atol=1e-6, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "fun", "dull", ","]
    vocab = tmp_path_factory.mktemp("bert") / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n")
    tok = transformers.BertTokenizer(str(vocab))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=C, num_hidden_layers=L,
                                     num_attention_heads=NH, intermediate_size=37)  # fmt: skip
    return transformers.BertModel(config).eval(), tok


@torch.no_grad()
def test_encoder_classifier_mean_pools_real_tokens_only(tiny_bert):
    encoder, tok = tiny_bert
    clf = EncoderClassifier(encoder, n_classes=3).eval()
    alone = tok(["good fun"], return_tensors="pt")
    padded = tok(["good fun", "bad , bad , dull dull"], padding=True, return_tensors="pt")
    a = clf(alone["input_ids"], alone["attention_mask"])
    b = clf(padded["input_ids"], padded["attention_mask"])
    assert b.shape == (2, 3)
    assert (a[0] - b[0]).abs().max() <= 1e-5


def test_train_encoder_classifier_lowers_the_loss(tiny_bert):
    encoder, tok = tiny_bert
    before = copy.deepcopy(encoder.state_dict())
    r = train_encoder_classifier(encoder, tok, TRAIN, TRAIN, steps=3, batch_size=4, lr=1e-3)
    assert r["losses"][-1] < r["losses"][0] and r["eval_loss_after"] < r["eval_loss_before"]
    n_encoder = sum(p.numel() for p in encoder.parameters())
    assert r["trainable_params"] == r["total_params"] == n_encoder + C * 2 + 2  # + head
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())


@pytest.mark.slow
def test_smollm2_lora_smoke(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("transformers")
    from lmlib.pretrained import llama_from_smollm2, load_smollm2

    hf, tok = load_smollm2()
    model = llama_from_smollm2()
    examples = [LabeledSentence("a charming , funny film .", 1),
                LabeledSentence("a dull , tedious mess .", 0)]  # fmt: skip
    prompts = ["Review: " + ex.sentence + "\nSentiment:" for ex in examples]
    ours = label_word_logprobs(model, tok, prompts, [" negative", " positive"])
    theirs = label_word_logprobs(hf, tok, prompts, [" negative", " positive"])
    assert (ours - theirs).abs().max() <= 1e-3
    assert classify(model, tok, prompts, [" negative", " positive"]).tolist() == [1, 0]
    r = finetune_classifier(model, tok, "lora", examples, examples, steps=2, batch_size=2)
    assert r["trainable_params"] == 460_800  # 30 layers * 8 * ((576 + 576) + (576 + 192))
    assert len(r["losses"]) == 2 and r["accuracy_after"] >= 0.5


def test_finetune_classifier_can_return_the_trained_copy(model):
    r = finetune_classifier(model, CharTokenizer(), "lora", TRAIN, TRAIN, steps=2, batch_size=4,
                            lr=1e-2, template="{sentence} :", label_words=(" no", " yes"), r=2,
                            keep_model=True)  # fmt: skip
    trained = r["model"]
    assert trained is not model and not trained.training
    prompts = [f"{ex.sentence} :" for ex in TRAIN]
    logp = label_word_logprobs(trained, CharTokenizer(), prompts, [" no", " yes"])
    loss = -logp[torch.arange(len(TRAIN)), torch.tensor([ex.label for ex in TRAIN])].mean()
    assert loss.item() == pytest.approx(r["eval_loss_after"], abs=1e-5)


def test_lora_on_the_last_block_only_trains_that_block(model):
    """lora_targets names the layers LoRA wraps: here the last block's alone, so the other
    block gains no LoRA weights; a name that matches nothing, or LoRA targets for another
    method, is refused."""
    if isinstance(model, GPT):
        last = ("h.1.attn.c_attn",)
    else:
        last = ("blocks.1.attn.q_proj", "blocks.1.attn.v_proj")
    r = finetune_classifier(model, CharTokenizer(), "lora", TRAIN, TRAIN, steps=2, batch_size=4,
                            lr=1e-2, template="{sentence} :", label_words=(" no", " yes"), r=2,
                            lora_targets=last, keep_model=True)  # fmt: skip
    trained = dict(r["model"].named_parameters())
    lora = sorted(n for n in trained if "lora_" in n)
    assert lora and all(".1." in n for n in lora)
    # r * (d_in + d_out) per wrapped layer: GPT's c_attn is C -> 3C; Llama's q_proj C -> C and
    # v_proj C -> NKV heads of C // NH channels
    expected = 2 * (C + 3 * C) if isinstance(model, GPT) else 2 * (C + C) + 2 * (C + NKV * C // NH)
    assert r["trainable_params"] == expected  # 256 and 224
    assert r["trainable_params"] == sum(trained[n].numel() for n in lora)
    with pytest.raises(ValueError, match="lora_targets is for method 'lora'"):
        finetune_classifier(model, CharTokenizer(), "adapter", TRAIN, TRAIN, steps=1,
                            lora_targets=last)  # fmt: skip
    with pytest.raises(ValueError, match="no nn.Linear"):
        finetune_classifier(model, CharTokenizer(), "lora", TRAIN, TRAIN, steps=1,
                            lora_targets=("blocks.7.attn.q_proj",))  # fmt: skip


def test_blocks_put_lora_and_adapters_in_the_last_block_only(model):
    """blocks=[-1] trains the same LoRA as naming the last block's layers, bit for bit, and
    puts adapters there alone; prompt tuning and full fine-tuning refuse it."""
    last = ("h.1.attn.c_attn",) if isinstance(model, GPT) else (
        "blocks.1.attn.q_proj", "blocks.1.attn.v_proj")  # fmt: skip
    kw = dict(steps=2, batch_size=4, lr=1e-2, template="{sentence} :", r=2, bottleneck=3,
              label_words=(" no", " yes"))  # fmt: skip
    by_names = finetune_classifier(model, CharTokenizer(), "lora", TRAIN, TRAIN,
                                   lora_targets=last, **kw)  # fmt: skip
    by_blocks = finetune_classifier(model, CharTokenizer(), "lora", TRAIN, TRAIN, blocks=[-1],
                                    **kw)  # fmt: skip
    assert by_blocks["losses"] == by_names["losses"]
    assert by_blocks["trainable_params"] == by_names["trainable_params"]
    adapted = finetune_classifier(model, CharTokenizer(), "adapter", TRAIN, TRAIN, blocks=[-1],
                                  keep_model=True, **kw)  # fmt: skip
    names = [n for n, p in adapted["model"].named_parameters() if p.requires_grad]
    assert names and all(".1." in n and ".adapter." in n for n in names)
    assert adapted["trainable_params"] == 2 * (C * 3 + 3 + 3 * C + C)  # attn and MLP adapters
    for method in ("prompt", "full"):
        with pytest.raises(ValueError, match=f"blocks is for methods 'lora' and 'adapter', "
                                             f"not '{method}'"):  # fmt: skip
            finetune_classifier(model, CharTokenizer(), method, TRAIN, TRAIN, steps=1,
                                blocks=[-1])  # fmt: skip
