"""Open bases: import of Llama-family models written by ``transformers`` and of the bundled SmolLM2 GGUF gives
the same logits as ``transformers``; unsupported models and bad files are refused naming the field; import ->
export hf round trip; continued pretraining from an imported base resumes after SIGKILL exactly; ``tweetlm eval``
scores a file of posts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from killing import sigkill_at_step

from tweetlm.cli.main import main
from tweetlm.jobs.import_base import import_base
from tweetlm.model.hf_format import model_config_from_hf
from tweetlm.model.load import load_model, resolve_checkpoint
from tweetlm.tokenizer.bpe import PostTokenizer, TokenizerConfig, train_tokenizer

transformers = pytest.importorskip("transformers")
REPO = Path(__file__).resolve().parents[1]
TEXTS = ["rain again this morning #monday", "coffee first, then the train @user", "lol 😂 best game tonight"] * 30


def _tiny_hf_folder(path: Path, **overrides) -> Path:
    """A random-weight Llama written by transformers, with a tokenizer folder transformers loads."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = train_tokenizer(TEXTS, TokenizerConfig(vocab_size=300))
    kw = dict(
        vocab_size=tok.vocab_size,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=500.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    kw.update(overrides)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**kw))
    with torch.no_grad():  # transformers initialises norms to 1: make them matter
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    model.save_pretrained(path)
    tok.tok.save(str(path / "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|bos|>", "eos_token": "<|eos|>"}
    (path / "tokenizer_config.json").write_text(json.dumps(cfg))
    return path


def _hf_logits(folder: Path, ids: torch.Tensor, **kw) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw).eval()
    with torch.no_grad():
        return m(ids).logits


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # grouped-query attention, untied head
        {  # Llama 3.1/3.2 RoPE scaling, tied embeddings
            "tie_word_embeddings": True,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        },
    ],
    ids=["gqa_untied", "llama3_rope_tied"],
)
def test_import_of_a_transformers_llama_gives_its_logits(tmp_path, overrides):
    src = _tiny_hf_folder(tmp_path / "hf", **overrides)
    r = import_base(str(src), tmp_path / "ck")
    assert r["base"]["kind"] == "folder" and len(r["base"]["sha256"]) == 64
    ours = load_model(tmp_path / "ck")
    tok = PostTokenizer.load(tmp_path / "ck" / "tokenizer.json")
    assert (tok.bos_id, tok.eos_id) == (tok.tok.token_to_id("<|bos|>"), tok.tok.token_to_id("<|eos|>"))
    ids = torch.tensor([[tok.bos_id, *tok.encode("coffee first, then the train again and again " * 2)]])
    assert ids.shape[1] > 32  # past the original context, where llama3 scaling matters
    with torch.no_grad():
        a = ours(ids)
    b = _hf_logits(src, ids)
    assert (a - b).abs().max().item() < 1e-5  # measured: ~1e-6 (fp32, different op order)
    # round trip: import -> export hf reproduces the source logits in transformers
    main(["export", "hf", "--checkpoint", str(tmp_path / "ck"), "--out", str(tmp_path / "exp")])
    c = _hf_logits(tmp_path / "exp", ids)
    assert (c - b).abs().max().item() < 1e-5
    exported = json.loads((tmp_path / "exp" / "tokenizer_config.json").read_text())
    assert exported["bos_token"] == "<|bos|>" and exported["eos_token"] == "<|eos|>"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}, "not a Llama-family"),
        ({"attention_bias": True}, "attention_bias"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"sliding_window": 64}, "sliding_window"),
        ({"head_dim": 32}, "head_dim"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
    ],
)
def test_unsupported_fields_are_refused_by_name(change, message):
    hf = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 300,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 128,
    }
    model_config_from_hf(hf)  # the unchanged config imports
    with pytest.raises(ValueError, match=message):
        model_config_from_hf({**hf, **change})


def test_bad_sources_are_clear_errors(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "empty").mkdir()
    gguf = tmp_path / "cut.gguf"
    gguf.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 40)  # a header that ends too soon
    cases = [
        (tmp_path / "notes.txt", "not a GGUF file"),
        (tmp_path / "empty", "no config.json"),
        (tmp_path / "missing", "not found"),
        (gguf, "cut.gguf"),
    ]
    for src, msg in cases:
        assert main(["import", str(src), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_out_never_loses_files_and_a_checkpoint_can_be_the_next_base(tmp_path, capsys):
    src = _tiny_hf_folder(tmp_path / "hf")
    keep = tmp_path / "notes"
    keep.mkdir()
    (keep / "important.txt").write_text("mine")
    (tmp_path / "afile").write_text("x")
    for out, msg in ((keep, "not empty"), (tmp_path / "afile", "is a file")):
        assert main(["import", str(src), "--out", str(out)]) == 2
        assert msg in capsys.readouterr().err
    assert main(["import", str(src), "--out", str(keep), "--overwrite"]) == 2  # --overwrite replaces checkpoints only
    assert (keep / "important.txt").read_text() == "mine"
    assert main(["import", str(src), "--out", str(tmp_path / "ck")]) == 0
    assert main(["import", str(src), "--out", str(tmp_path / "ck")]) == 2  # a checkpoint needs --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["import", str(src), "--out", str(tmp_path / "ck"), "--overwrite"]) == 0
    assert oct((tmp_path / "ck" / "model.safetensors").stat().st_mode & 0o044) == oct(0o044 & ~_umask())
    # a tweetlm checkpoint is a base too (to continue a continued model): same weights, provenance chained
    r = import_base(str(tmp_path / "ck"), tmp_path / "again")
    assert r["base"]["kind"] == "tweetlm" and r["base"]["parent"]["kind"] == "folder"
    a, b = load_model(tmp_path / "ck"), load_model(tmp_path / "again")
    for (n, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(x, y), n
    assert not [p.name for p in tmp_path.iterdir() if "importing" in p.name]  # no temporary folder left


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_a_missing_tensor_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    src = _tiny_hf_folder(tmp_path / "hf")
    (weights,) = src.glob("*.safetensors")
    sd = load_file(weights)
    del sd["model.layers.1.mlp.down_proj.weight"]
    save_file(sd, str(weights), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="down_proj"):
        import_base(str(src), tmp_path / "ck")


def _bundled_or_skip() -> str:
    from tweetlm.model.hf_format import bundled_base_path

    try:
        return str(bundled_base_path("smollm2-135m"))
    except ValueError as e:
        pytest.skip(str(e))


def test_import_of_the_bundled_smollm2_gguf_gives_transformers_logits(tmp_path):
    path = Path(_bundled_or_skip())
    r = import_base("smollm2-135m", tmp_path / "smol")
    assert r["params"] == 134_515_008 and r["base"]["kind"] == "gguf"
    assert r["base"]["document_tokens"]["eos_token"] == "<|endoftext|>"
    tok = PostTokenizer.load(tmp_path / "smol" / "tokenizer.json")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    text = "Just landed at JFK and my bag is lost again @united #fail 😂"
    assert tok.decode(tok.encode(text)) == text
    ids = torch.tensor([[tok.bos_id, *tok.encode(text)]])
    with torch.no_grad():
        a = load_model(tmp_path / "smol")(ids)
    b = _hf_logits(path.parent, ids, gguf_file=path.name)
    assert (a - b).abs().max().item() < 1e-4  # measured: 0.0 (same dequantized weights, same fp32 ops)
    # the export stops generation at the end of a post and at the end of a chat turn
    assert tok.eot_id == tok.tok.token_to_id("<|im_end|>")
    main(["export", "hf", "--checkpoint", str(tmp_path / "smol"), "--out", str(tmp_path / "exp")])
    gen = json.loads((tmp_path / "exp" / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [tok.eos_id, tok.eot_id] == [0, 2]


def _posts(path: Path, n: int = 600) -> Path:
    import random

    rng = random.Random(0)
    words = "rain coffee morning train late again love this city game tonight #monday @user lol 😂".split()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": str(10**15 + i), "text": " ".join(rng.choices(words, k=rng.randint(3, 12)))}))
            f.write("\n")
    return path


def _losses(path: Path) -> dict:
    return {r["step"]: r["loss"] for r in map(json.loads, path.read_text().splitlines())}


def test_continued_pretraining_resumes_after_sigkill_exactly(tmp_path):
    corpus = _posts(tmp_path / "posts.jsonl")
    base = _tiny_hf_folder(tmp_path / "hf")
    args = [
        sys.executable, "-m", "tweetlm.cli.main", "run", "--corpus", str(corpus), "--recipe", "tiny_base_cpu",
        "--base", str(base), "--no-progress", "--runs-dir", str(tmp_path / "runs"),
        "--set", "train.max_steps=60", "--set", "train.ckpt_every=5", "--set", "train.log_every=1",
        "--set", "train.tensorboard=false", "--set", "sample.num_samples=1", "--set", "scratch_recipe=tiny_cpu",
        "--set", "scratch_steps=10",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS=str(torch.get_num_threads()))
    p = subprocess.run(args + ["--name", "full"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    ref = _losses(tmp_path / "runs" / "full" / "metrics.jsonl")
    ev = json.loads((tmp_path / "runs" / "full" / "eval.json").read_text())
    assert ev["overall"]["bpb"] < ev["base"]["overall"]["bpb"]  # continued training helps on held-out posts
    assert ev["overall"]["docs"] == ev["base"]["overall"]["docs"] > 0
    scratch = json.loads((tmp_path / "runs" / "full" / "stages.json").read_text())["scratch"]
    assert scratch["train"]["steps"] == 10 and scratch["eval"]["overall"]["bytes"] == ev["overall"]["bytes"]
    report = (tmp_path / "runs" / "full" / "report.md").read_text()
    assert "Base vs continued vs from scratch" in report and "from scratch (`tiny_cpu`" in report
    proc = subprocess.Popen(args + ["--name", "killed"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics = tmp_path / "runs" / "killed" / "metrics.jsonl"
    sigkill_at_step(proc, metrics, 12)
    p = subprocess.run(args + ["--name", "killed", "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    after = _losses(metrics)
    assert sorted(after) == list(range(1, 61))
    for s in range(1, 61):
        assert after[s] == ref[s], (s, after[s], ref[s])
    a = load_model(resolve_checkpoint(tmp_path / "runs" / "full"))
    b = load_model(resolve_checkpoint(tmp_path / "runs" / "killed"))
    for (n, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(x, y), n


def test_eval_command_scores_a_file_of_posts(tmp_path, capsys):
    src = _tiny_hf_folder(tmp_path / "hf")
    import_base(str(src), tmp_path / "ck")
    corpus = _posts(tmp_path / "posts.jsonl", n=200)
    with open(corpus, "a", encoding="utf-8") as f:
        f.write('{"id": "x", "text": \n')  # quarantined, not fatal
        f.write(json.dumps({"id": "fr1", "text": "Bonjour tout le monde, il pleut encore ce matin à Paris"}) + "\n")
    out = tmp_path / "ev"
    rc = main(["eval", "--checkpoint", str(tmp_path / "ck"), "--corpus", str(corpus), "--out", str(out),
               "--no-progress"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    res = json.loads((out / "eval.json").read_text())
    o = res["overall"]
    assert o["docs"] > 150 and o["bpb"] > 0 and 0 < o["bpb_se"] < o["bpb"]
    assert "per language" in text and "bits-per-byte" in text
    assert res["per_language"]["fr"]["docs"] >= 1  # the French post (lingua also calls some word salads French)
    assert sum(e["docs"] for e in res["per_language"].values()) == o["docs"]
    assert sum(e["docs"] for e in res["per_source"].values()) == o["docs"]
    # the pooled number is the byte-weighted mean of the per-language ones
    pooled = sum(e["bpb"] * e["bytes"] for e in res["per_language"].values()) / o["bytes"]
    assert abs(pooled - o["bpb"]) < 1e-9
    assert "1 quarantined" in res["records"][-1]
    assert main(["eval", "--checkpoint", str(tmp_path / "nope"), "--corpus", str(corpus)]) == 2
