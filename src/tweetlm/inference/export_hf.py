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

from tweetlm.model.hf_format import hf_config, hf_state_dict
from tweetlm.model.load import load_model, resolve_checkpoint, save_weights


def export_hf(ckpt_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a Hugging Face Llama model folder from tweetlm checkpoint ``ckpt_dir`` (or a run folder's latest
    checkpoint); returns ``out_dir``.

    Raises ``FileNotFoundError`` when ``ckpt_dir`` is not a checkpoint (needs ``model.safetensors``,
    ``config.json``, ``tokenizer.json``).
    """
    from tweetlm.tokenizer.bpe import PostTokenizer

    ckpt, out = resolve_checkpoint(ckpt_dir), Path(out_dir)
    tok_path = ckpt / "tokenizer.json"
    if not tok_path.exists():
        raise FileNotFoundError(f"{tok_path} not found: is {ckpt} a tweetlm checkpoint folder?")
    model = load_model(ckpt)
    tok = PostTokenizer.load(tok_path)
    out.mkdir(parents=True, exist_ok=True)
    # generation stops at the end of a post and, for a chat base, at the end of a turn (<|im_end|>)
    eos = tok.eos_id if tok.eot_id is None else [tok.eos_id, tok.eot_id]
    cfg = hf_config(model.cfg, tok.bos_id, eos, tok.pad_id)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    save_weights(hf_state_dict(model), out / "model.safetensors", metadata={"format": "pt"})
    shutil.copyfile(tok_path, out / "tokenizer.json")
    specials = {k: v for k, v in tok.specials.items() if k != "eot_token"}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=1))
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model.cfg.max_seq_len,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        **specials,
    }
    if tok.chat_template:
        tok_cfg["chat_template"] = tok.chat_template
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=1))
    gen = {
        "bos_token_id": tok.bos_id,
        "eos_token_id": eos,
        "pad_token_id": tok.pad_id,
        "do_sample": True,
        "temperature": 0.9,
        "top_p": 0.95,
        "max_new_tokens": 64,
    }
    (out / "generation_config.json").write_text(json.dumps(gen, indent=1))
    return out
