"""Hugging Face checkpoints in lmlib's own GPT and Llama (Chapter 3).

`lmlib.model` names its modules as Hugging Face does where it can, so loading a checkpoint
is mostly copying tensors key for key. Three things need care, each handled here:

- config fields: Hugging Face's ``n_layer``, ``num_attention_heads``, ... become our
  ``n_layers``, ``n_heads``, ... (`gpt_config_from_hf`, `llama_config_from_hf`);
- GPT-2's ``Conv1D`` layers store their weights transposed (`gpt_from_hf`);
- our Llama's module names are shorter than Hugging Face's (`llama_from_hf`).

The tests load tiny random checkpoints and compare logits and attention weights with
Hugging Face's; `lmlib.pretrained.llama_from_smollm2` loads SmolLM2-135M this way.
"""

from __future__ import annotations

import torch

from lmlib.model import GPT, GPTConfig, Llama, LlamaConfig


def gpt_config_from_hf(hf_config) -> GPTConfig:
    """The same architecture as a ``transformers.GPT2Config``, as a `GPTConfig`.

    GPT-2 small's Hugging Face config is our default:

    >>> from types import SimpleNamespace
    >>> small = SimpleNamespace(n_positions=1024, vocab_size=50257, n_layer=12, n_head=12,
    ...     n_embd=768, layer_norm_epsilon=1e-5, activation_function="gelu_new", n_inner=None)
    >>> gpt_config_from_hf(small) == GPTConfig()
    True
    """
    if hf_config.activation_function != "gelu_new" or hf_config.n_inner is not None:
        raise ValueError("only GPT-2's tanh-GELU MLP with hidden size 4 * d_model is built")
    return GPTConfig(block_size=hf_config.n_positions, vocab_size=hf_config.vocab_size,
                     n_layers=hf_config.n_layer, n_heads=hf_config.n_head,
                     d_model=hf_config.n_embd,
                     layer_norm_eps=hf_config.layer_norm_epsilon)  # fmt: skip


def llama_config_from_hf(hf_config) -> LlamaConfig:
    """The same architecture as a ``transformers.LlamaConfig``, as our `LlamaConfig`."""
    # transformers >= 5 keeps rope_theta inside rope_parameters; older versions did not.
    rope = getattr(hf_config, "rope_parameters", None) or {}
    base = rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"only plain RoPE is built, not {rope['rope_type']!r}")
    hs = getattr(hf_config, "head_dim", None)
    if hs is not None and hs * hf_config.num_attention_heads != hf_config.hidden_size:
        raise ValueError(f"head_dim {hs} * heads must equal hidden_size")
    return LlamaConfig(vocab_size=hf_config.vocab_size,
                       block_size=hf_config.max_position_embeddings,
                       n_layers=hf_config.num_hidden_layers,
                       n_heads=hf_config.num_attention_heads,
                       n_kv_heads=hf_config.num_key_value_heads,
                       d_model=hf_config.hidden_size, hidden=hf_config.intermediate_size,
                       rope_base=float(base), rms_eps=hf_config.rms_norm_eps,
                       tie_embeddings=hf_config.tie_word_embeddings)  # fmt: skip


def _state_dict_and_config(hf_model_or_state_dict, hf_config):
    """A Hugging Face model brings its own config; a bare state dict needs one passed."""
    sd = hf_model_or_state_dict
    if isinstance(sd, torch.nn.Module):
        hf_config = hf_config or sd.config
        sd = sd.state_dict()
    if not isinstance(sd, dict):
        raise TypeError(f"pass a Hugging Face model or its state dict, got {type(sd).__name__}")
    if hf_config is None:
        raise ValueError("pass hf_config along with a state dict")
    return sd, hf_config


def gpt_from_hf(hf_model_or_state_dict, hf_config=None) -> GPT:
    """Our `GPT` with the weights of a ``GPT2LMHeadModel`` or its state dict (copied).

    Module names are Hugging Face's, but its GPT-2 keeps OpenAI's ``Conv1D`` layers, which
    compute ``x @ W`` with W of shape (in, out); ``nn.Linear`` computes ``x @ W.T`` with W
    (out, in). So those four weights are transposed; everything else copies as is.
    """
    sd, hf_config = _state_dict_and_config(hf_model_or_state_dict, hf_config)
    model = GPT(gpt_config_from_hf(hf_config))
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
              "mlp.c_proj.weight")  # fmt: skip
    ours = {}
    for key, w in sd.items():
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # causal-mask buffers in older transformers, not weights
        ours[key] = w.t() if key.endswith(conv1d) else w
    ours.setdefault("lm_head.weight", ours["transformer.wte.weight"])  # tied
    model.load_state_dict(ours)  # strict: a missing or extra key is an error
    return model


# Hugging Face key fragment -> ours; applied in order to every key of a Llama state dict.
_LLAMA_RENAMES = (
    ("model.embed_tokens.", "embed."),
    ("model.layers.", "blocks."),
    ("model.norm.", "norm."),
    (".self_attn.", ".attn."),
    (".input_layernorm.", ".ln_1."),
    (".post_attention_layernorm.", ".ln_2."),
)


def llama_from_hf(hf_model_or_state_dict, hf_config=None) -> Llama:
    """Our `Llama` with the weights of a ``LlamaForCausalLM`` or its state dict (copied).

    Our module names are shorter than Hugging Face's; the renames above map them.
    """
    sd, hf_config = _state_dict_and_config(hf_model_or_state_dict, hf_config)
    config = llama_config_from_hf(hf_config)
    ours = {}
    for key, w in sd.items():
        for theirs, mine in _LLAMA_RENAMES:
            key = key.replace(theirs, mine)
        ours[key] = w
    if config.tie_embeddings:
        ours.setdefault("lm_head.weight", ours["embed.weight"])  # often saved only once
    return Llama.from_weights(config, ours)  # strict: a missing or extra key is an error
