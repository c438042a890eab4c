"""Export a checkpoint to the Hugging Face Llama format (layer L3, inference), for ``transformers`` and vLLM.

Writes ``config.json`` (``LlamaForCausalLM``), ``model.safetensors`` with Hugging Face tensor names,
``tokenizer.json`` plus ``tokenizer_config.json``/``special_tokens_map.json`` (a ``PreTrainedTokenizerFast``
with tweetlm's ``<|bos|>``/``<|eos|>``/``<|pad|>``), and ``generation_config.json``. tweetlm's RoPE uses the
same half-split layout as ``transformers``' Llama, so weights are renamed, never permuted. Optionally a GGUF
file through the ``gguf`` package (``export_gguf``).

Hugging Face's tokenizer adds no special tokens by itself; a caller scoring a post prepends ``<|bos|>`` as
tweetlm does (``generation_config.json`` records the ids).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from tweetlm.model.config import ModelConfig
from tweetlm.model.load import load_model, resolve_checkpoint

# tweetlm parameter name (per block where it has {i}) -> Hugging Face Llama name
_NAME_MAP = {
    "tok_emb.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
    "blocks.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blocks.{i}.attn.wq.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blocks.{i}.attn.wk.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blocks.{i}.attn.wv.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blocks.{i}.attn.wo.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blocks.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blocks.{i}.ffn.w1.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blocks.{i}.ffn.w3.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blocks.{i}.ffn.w2.weight": "model.layers.{i}.mlp.down_proj.weight",
}


def hf_config(cfg: ModelConfig, bos_id: int, eos_id: int, pad_id: int) -> dict:
    """The ``config.json`` of a ``LlamaForCausalLM`` with the same shape as ``cfg``."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": cfg.init_std,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": "float32",
    }


def hf_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """tweetlm weights under Hugging Face names (contiguous fp32 copies; a tied head is stored once)."""
    out = {}
    for name, p in model.state_dict().items():
        parts = name.split(".")
        key = ".".join("{i}" if (parts[0] == "blocks" and j == 1) else x for j, x in enumerate(parts))
        if key not in _NAME_MAP:
            continue  # non-persistent buffers are not in state_dict; anything else would be a new parameter
        hf = _NAME_MAP[key].format(i=parts[1] if parts[0] == "blocks" else "")
        out[hf] = p.detach().to(torch.float32).contiguous().clone()
    if model.cfg.tie_embeddings:
        out.pop("lm_head.weight", None)
    return out


def export_hf(ckpt_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a Hugging Face Llama model folder from tweetlm checkpoint ``ckpt_dir`` (or a run folder's latest
    checkpoint); returns ``out_dir``.

    Raises ``FileNotFoundError`` when ``ckpt_dir`` is not a checkpoint (needs ``model.safetensors``,
    ``config.json``, ``tokenizer.json``).
    """
    from safetensors.torch import save_file

    from tweetlm.tokenizer.bpe import BOS, EOS, PAD, PostTokenizer

    ckpt, out = resolve_checkpoint(ckpt_dir), Path(out_dir)
    tok_path = ckpt / "tokenizer.json"
    if not tok_path.exists():
        raise FileNotFoundError(f"{tok_path} not found: is {ckpt} a tweetlm checkpoint folder?")
    model = load_model(ckpt)
    tok = PostTokenizer.load(tok_path)
    out.mkdir(parents=True, exist_ok=True)
    cfg = hf_config(model.cfg, tok.bos_id, tok.eos_id, tok.pad_id)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    save_file(hf_state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(tok_path, out / "tokenizer.json")
    specials = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=1))
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model.cfg.max_seq_len,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        **specials,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=1))
    gen = {
        "bos_token_id": tok.bos_id,
        "eos_token_id": tok.eos_id,
        "pad_token_id": tok.pad_id,
        "do_sample": True,
        "temperature": 0.9,
        "top_p": 0.95,
        "max_new_tokens": 64,
    }
    (out / "generation_config.json").write_text(json.dumps(gen, indent=1))
    return out
