"""lmlib.seq2seq against torch.nn.Transformer with the same weights, its cached decoding
against full forward passes, padding, causality, the loss and the learning-rate schedule."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmlib.attention import MultiHeadAttention, scaled_dot_product_attention
from lmlib.generate import GenerationConfig
from lmlib.seq2seq import (
    Attention,
    EncoderDecoder,
    Seq2SeqConfig,
    SourceDecoder,
    label_smoothed_cross_entropy,
    sequence_log_prob,
    translate,
    warmup_lr,
)

ATOL = 1e-5
V, BOS, EOS, PAD = 23, 1, 2, 0


def tiny(norm_first=False, seed=0, **changes):
    torch.manual_seed(seed)
    config = dict(vocab_size=V, block_size=16, n_layers=2, n_heads=4, d_model=16, hidden=32,
                  dropout=0.0, norm_first=norm_first)  # fmt: skip
    return EncoderDecoder(Seq2SeqConfig(**(config | changes))).eval()


def ids(B, T, seed=1):
    return torch.randint(3, V, (B, T), generator=torch.Generator().manual_seed(seed))


def reference_for(model):
    """torch.nn.Transformer with ``model``'s weights copied in."""
    c = model.config
    ref = nn.Transformer(c.d_model, c.n_heads, c.n_layers, c.n_layers, c.hidden, dropout=0.0,
                         batch_first=True, norm_first=c.norm_first).eval()  # fmt: skip
    if not c.norm_first:  # torch adds a final norm to both stacks; the paper's post-norm has none
        ref.encoder.norm, ref.decoder.norm = None, None
    else:
        ref.encoder.norm.load_state_dict(model.encoder_norm.state_dict())
        ref.decoder.norm.load_state_dict(model.decoder_norm.state_dict())

    def copy_attention(theirs: nn.MultiheadAttention, ours: Attention):
        projections = (ours.q_proj, ours.k_proj, ours.v_proj)
        theirs.in_proj_weight.copy_(torch.cat([p.weight for p in projections]))
        theirs.in_proj_bias.copy_(torch.cat([p.bias for p in projections]))
        theirs.out_proj.load_state_dict(ours.out_proj.state_dict())

    with torch.no_grad():
        for theirs, ours in zip(ref.encoder.layers, model.encoder, strict=True):
            copy_attention(theirs.self_attn, ours.self_attn)
            for name in ("norm1", "norm2"):
                getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())
            theirs.linear1.load_state_dict(ours.ffn.linear1.state_dict())
            theirs.linear2.load_state_dict(ours.ffn.linear2.state_dict())
        for theirs, ours in zip(ref.decoder.layers, model.decoder, strict=True):
            copy_attention(theirs.self_attn, ours.self_attn)
            copy_attention(theirs.multihead_attn, ours.cross_attn)
            for name in ("norm1", "norm2", "norm3"):
                getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())
            theirs.linear1.load_state_dict(ours.ffn.linear1.state_dict())
            theirs.linear2.load_state_dict(ours.ffn.linear2.state_dict())
    return ref


# torch's own notes on its nested-tensor fast path, irrelevant here
@pytest.mark.filterwarnings("ignore:.*nested")
@pytest.mark.parametrize("norm_first", [False, True])
def test_matches_torch_nn_transformer_with_the_same_weights(norm_first):
    model = tiny(norm_first)
    ref = reference_for(model)
    src, tgt = ids(3, 7), ids(3, 5, seed=2)
    src_mask = torch.ones(3, 7, dtype=torch.long)
    src_mask[1, 5:] = 0  # right padding: positions of real tokens are unchanged
    src_mask[2, 3:] = 0
    scale = math.sqrt(model.config.d_model)
    with torch.no_grad():
        ours = model(src, tgt, src_mask=src_mask).logits
        src_x = model.src_embed(src) * scale + model.pe[:7]  # (B, S, C)
        tgt_x = model.tgt_embed(tgt) * scale + model.pe[:5]  # (B, T, C)
        hidden = ref(src_x, tgt_x, tgt_mask=nn.Transformer.generate_square_subsequent_mask(5),
                     src_key_padding_mask=src_mask == 0,
                     memory_key_padding_mask=src_mask == 0)  # fmt: skip
        theirs = model.lm_head(hidden)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    assert (ours - theirs).abs().max() < ATOL < ours.abs().max()  # a real comparison


def test_attention_keeps_multihead_attention_and_adds_cross_attention():
    torch.manual_seed(0)
    att = Attention(d_model=8, n_heads=2).eval()
    x, memory = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    # self-attention: attend_to equals the parent's forward (no mask: every key visible)
    torch.testing.assert_close(att.attend_to(x)[0], MultiHeadAttention.forward(att, x),
                               atol=ATOL, rtol=0)  # fmt: skip
    # cross-attention by hand: queries from x, keys and values from memory, padding masked
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()[:, None, None, :]
    out, w = att.attend_to(x, att.project_kv(memory), keep, return_weights=True)
    q = att.q_proj(x).view(2, 3, 2, 4).transpose(1, 2)  # (B, nh, T, hs)
    k = att.k_proj(memory).view(2, 5, 2, 4).transpose(1, 2)  # (B, nh, S, hs)
    v = att.v_proj(memory).view(2, 5, 2, 4).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1) / 2.0).masked_fill(~keep, float("-inf"))
    by_hand = att.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 3, 8))
    torch.testing.assert_close(out, by_hand, atol=ATOL, rtol=0)
    assert w.shape == (2, 2, 3, 5) and w[1, :, :, 3:].max() == 0
    fast, _ = att.attend_to(x, att.project_kv(memory), keep)  # the fused kernel
    torch.testing.assert_close(fast, out, atol=ATOL, rtol=0)
    assert torch.allclose(scaled_dot_product_attention(q, k, v, keep), scores.softmax(-1) @ v,
                          atol=ATOL)  # fmt: skip


def greedy_by_full_passes(model, src, n, src_mask=None):
    """The slowest correct decoder: encoder and decoder rerun on everything at every step."""
    seq = torch.full((src.size(0), 1), BOS)
    with torch.no_grad():
        for _ in range(n):
            logits = model(src, seq, src_mask=src_mask).logits[:, -1]
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
    return seq[:, 1:]


@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_decoding_equals_uncached(norm_first):
    model = tiny(norm_first)
    src = ids(3, 6)
    cached = translate(model, src, BOS, max_new_tokens=8)
    uncached = translate(model, src, BOS, max_new_tokens=8, use_cache=False)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, greedy_by_full_passes(model, src, 8))
    # beam search through lmlib.beam_search: cached equals uncached, one beam is greedy
    beams = translate(model, src, BOS, max_new_tokens=8, num_beams=3)
    assert torch.equal(beams, translate(model, src, BOS, max_new_tokens=8, num_beams=3,
                                        use_cache=False))  # fmt: skip
    assert torch.equal(translate(model, src, BOS, max_new_tokens=8, num_beams=1), cached)


def test_logits_with_the_cache_equal_a_full_pass():
    model = tiny(True)
    src, tgt = ids(2, 5), ids(2, 6, seed=3)
    decoder = SourceDecoder(model, src)
    from lmlib.kvcache import KVCache

    cache = KVCache.for_model(decoder, batch_size=2, max_len=6)
    with torch.no_grad():
        full = model(src, tgt).logits
        steps = [decoder(tgt[:, :2], cache=cache).logits]  # a 2-token prefix, then one by one
        steps += [decoder(tgt[:, t : t + 1], cache=cache).logits for t in range(2, 6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)


def test_encoder_and_cross_attention_projections_run_once():
    model = tiny()
    calls = {"encoder": 0, "cross k": 0, "self k": 0}

    def count(name):
        def hook(*args):
            calls[name] += 1

        return hook

    model.encoder[0].register_forward_hook(count("encoder"))
    model.decoder[0].cross_attn.k_proj.register_forward_hook(count("cross k"))
    model.decoder[0].self_attn.k_proj.register_forward_hook(count("self k"))
    translate(model, ids(2, 5), BOS, max_new_tokens=6, num_beams=2)
    # the decoder's own keys: one call per step, each on the newest token only
    assert calls == {"encoder": 1, "cross k": 1, "self k": 6}


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batch_equals_each_pair_alone(side):
    model = tiny(norm_first=False)
    sources = [ids(1, 6, seed=4)[0], ids(1, 3, seed=5)[0], ids(1, 4, seed=6)[0]]
    targets = [ids(1, 5, seed=7)[0], ids(1, 2, seed=8)[0], ids(1, 4, seed=9)[0]]

    def pad(rows):
        width = max(len(r) for r in rows)
        out, mask = torch.full((len(rows), width), PAD), torch.zeros(len(rows), width).long()
        for i, r in enumerate(rows):
            cols = slice(0, len(r)) if side == "right" else slice(width - len(r), width)
            out[i, cols], mask[i, cols] = r, 1
        return out, mask

    src, src_mask = pad(sources)
    tgt, tgt_mask = pad(targets)  # the target side padded too
    with torch.no_grad():
        batch = model(src, tgt, src_mask=src_mask, tgt_mask=tgt_mask).logits
        for i, (s, t) in enumerate(zip(sources, targets)):
            alone = model(s[None], t[None]).logits[0]  # (T_i, V)
            rows = tgt_mask[i].bool()
            torch.testing.assert_close(batch[i, rows], alone, atol=ATOL, rtol=0)
    # generation: a padded batch of sources gives each source's own translation
    together = translate(model, src, BOS, src_mask=src_mask, max_new_tokens=6)
    for i, s in enumerate(sources):
        assert torch.equal(together[i], translate(model, s[None], BOS, max_new_tokens=6)[0])


def test_decoder_cannot_see_future_target_tokens():
    model = tiny()
    src, tgt = ids(1, 5), ids(1, 6, seed=2)
    edited = tgt.clone()
    edited[0, 4] = (tgt[0, 4] + 1) % V  # change target token 4 only
    with torch.no_grad():
        a, b = model(src, tgt).logits, model(src, edited).logits
    assert torch.equal(a[:, :4], b[:, :4])  # earlier positions identical, bit for bit
    assert (a[:, 4:] - b[:, 4:]).abs().amax(-1).min() > 1e-4
    # while every target position reads the whole source: edit the last source token
    src2 = src.clone()
    src2[0, -1] = (src[0, -1] + 1) % V
    with torch.no_grad():
        c = model(src2, tgt).logits
    assert (a - c).abs().amax(-1).min() > 1e-5


def test_shared_and_separate_embeddings():
    shared = tiny()
    assert (
        shared.src_embed is shared.tgt_embed and shared.lm_head.weight is shared.tgt_embed.weight
    )
    separate = tiny(share_embeddings=False, src_vocab_size=40)
    assert separate.src_embed.weight.shape == (40, 16)
    n = sum(p.numel() for p in separate.parameters()) - sum(p.numel() for p in shared.parameters())
    assert n == 40 * 16  # one more table, of the source's vocabulary
    out = separate(torch.tensor([[39, 5]]), torch.tensor([[1]]))  # id 39 exists in the source
    assert out.logits.shape == (1, 1, V)
    with pytest.raises(ValueError, match="share_embeddings needs one vocabulary"):
        Seq2SeqConfig(vocab_size=10, src_vocab_size=12)


def test_bad_input_gets_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match="batch sizes differ: src has 2 rows, tgt 3"):
        model(ids(2, 4), ids(3, 4))
    with pytest.raises(ValueError, match="batch sizes differ: the decoder holds 2"):
        SourceDecoder(model, ids(2, 4))(ids(3, 1))
    with pytest.raises(ValueError, match="source length 17 exceeds the model's block_size 16"):
        model(ids(1, 17), ids(1, 2))
    with pytest.raises(
        ValueError, match=r"src: token ids must lie in \[0, 23\), got min 3 and max 23"
    ):
        model(torch.tensor([[3, 23]]), ids(1, 2))
    with pytest.raises(ValueError, match=r"tgt: token ids must lie in \[0, 23\)"):
        model(ids(1, 3), torch.tensor([[1, -1]]))
    with pytest.raises(ValueError, match=r"src_mask must have the ids' shape \(1, 3\)"):
        model(ids(1, 3), ids(1, 2), src_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match="at least one real token"):
        model(ids(1, 3), ids(1, 2), src_mask=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="bos_id must be an int in"):
        translate(model, ids(1, 3), bos_id=V)
    with pytest.raises(ValueError, match="d_model 10 is not divisible by n_heads 4"):
        Seq2SeqConfig(d_model=10, n_heads=4)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothed_cross_entropy_matches_torch(smoothing):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=g) * 3
    targets = torch.randint(0, 7, (3, 5), generator=g)
    targets[0, 3:] = -100  # skipped positions
    ours = label_smoothed_cross_entropy(logits, targets, smoothing)
    theirs = F.cross_entropy(logits.view(-1, 7), targets.view(-1), ignore_index=-100,
                             label_smoothing=smoothing)  # fmt: skip
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_warmup_schedule_by_hand():
    d, w = 512, 4000
    assert warmup_lr(1, d, w) == pytest.approx(512**-0.5 * 4000**-1.5)  # 1.747e-7
    assert warmup_lr(w, d, w) == pytest.approx(1 / math.sqrt(512 * 4000))  # the peak
    assert warmup_lr(2000, d, w) == pytest.approx(warmup_lr(w, d, w) / 2)  # linear rise
    assert warmup_lr(4 * w, d, w) == pytest.approx(warmup_lr(w, d, w) / 2)  # 1/sqrt decay
    rates = [warmup_lr(s, d, w) for s in range(1, 3 * w)]
    assert max(rates) == rates[w - 1]
    with pytest.raises(ValueError, match="step must be an int >= 1"):
        warmup_lr(0, d, w)


def test_sequence_log_prob_is_the_sum_of_conditionals():
    model = tiny(True)
    src, y = ids(2, 5), ids(2, 4, seed=3)
    tgt = torch.cat([torch.full((2, 1), BOS), y[:, :-1]], dim=1)  # (bos, y_1 .. y_3)
    total = sequence_log_prob(model, src, tgt, y)
    # the other way: one conditional P(y_t | y_<t, x) at a time, from growing prefixes
    by_steps = torch.zeros(2)
    with torch.no_grad():
        for t in range(4):
            logp = model(src, tgt[:, : t + 1]).logits[:, -1].log_softmax(-1)  # (B, V)
            by_steps += logp.gather(-1, y[:, t, None])[:, 0]
    torch.testing.assert_close(total.detach(), by_steps, atol=ATOL, rtol=0)
    # and a padded row counts only its real tokens: -100 skips y_4
    masked = y.clone()
    masked[1, 3] = -100
    short = sequence_log_prob(model, src, tgt, masked)[1]
    with torch.no_grad():
        last = model(src, tgt).logits[1, 3].log_softmax(-1)[y[1, 3]]
    torch.testing.assert_close(short.detach(), (total[1] - last).detach(), atol=ATOL, rtol=0)


def test_generation_config_passes_through():
    model = tiny()
    out = translate(model, ids(2, 4), BOS, GenerationConfig(max_new_tokens=5), eos_token_id=EOS)
    assert out.shape[0] == 2 and out.shape[1] <= 5
