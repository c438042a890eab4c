"""The whole chain, end to end, through the CLI: posts -> corpus -> tokenizer -> shards -> train -> eval ->
samples -> report, plus the CLI's answers to bad input."""

from __future__ import annotations

import json
import random

import pytest

from tweetlm.cli.main import main


def _synthetic_corpus(path, n=1500):
    rng = random.Random(0)
    words = "rain coffee morning train late again love this city game tonight #monday @user lol 😂 🔥".split()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 14)))
            f.write(json.dumps({"id": str(10**18 + i), "text": text}) + "\n")
        f.write('{"id": "broken", "text": \n')  # malformed JSON: quarantined, not fatal
        f.write(json.dumps({"id": "nt"}) + "\n")  # missing text: quarantined
    return path


def test_tiny_run_end_to_end(tmp_path, capsys):
    corpus = _synthetic_corpus(tmp_path / "posts.jsonl")
    rc = main(
        [
            "run",
            "--corpus",
            str(corpus),
            "--recipe",
            "tiny_cpu",
            "--name",
            "t",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--no-progress",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "t"
    for f in (
        "config.json",
        "metrics.jsonl",
        "eval.json",
        "samples.json",
        "loss.png",
        "report.md",
        "tokenizer.json",
        "data/train.parquet",
        "data/manifest.json",
        "tokens/train.bin",
        "checkpoints/latest",
    ):
        assert (run / f).exists(), f
    stages = json.loads((run / "stages.json").read_text())
    d = stages["data"]
    assert d["records_in"] == 1502 and d["quarantined"] == 2
    assert d["records_in"] == d["kept"] + sum(d["dropped"].values()) + d["quarantined"]
    ev = json.loads((run / "eval.json").read_text())
    # a trained tiny model must beat the uniform byte model (8 bits per byte) by a wide margin
    assert 0 < ev["overall"]["bpb"] < 4.0
    assert stages["train"]["steps"] == 30
    ck = run / "checkpoints" / (run / "checkpoints" / "latest").read_text()
    assert {p.name for p in ck.iterdir()} >= {"model.safetensors", "config.json", "tokenizer.json", "trainer_state.pt"}
    assert "bits-per-byte" in out and "1502 in = " in (run / "report.md").read_text().replace(",", "")
    # the same command again refuses to overwrite; --resume continues (training already complete)
    assert (
        main(
            [
                "run",
                "--corpus",
                str(corpus),
                "--recipe",
                "tiny_cpu",
                "--name",
                "t",
                "--runs-dir",
                str(tmp_path / "runs"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "--resume" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                "--corpus",
                str(corpus),
                "--recipe",
                "tiny_cpu",
                "--name",
                "t",
                "--runs-dir",
                str(tmp_path / "runs"),
                "--no-progress",
                "--resume",
            ]
        )
        == 0
    )


def test_tiny_run_on_real_posts(tmp_path, corpora):
    rc = main(
        [
            "run",
            "--corpus",
            str(corpora / "tweeteval" / "irony"),
            str(corpora / "us_airline_sentiment"),
            "--recipe",
            "tiny_cpu",
            "--name",
            "real",
            "--runs-dir",
            str(tmp_path),
            "--no-progress",
            "--set",
            "train.max_steps=20",
        ]
    )
    assert rc == 0
    ev = json.loads((tmp_path / "real" / "eval.json").read_text())
    assert ev["tweeteval_val"]["docs"] > 0 and ev["tweeteval_val"]["bpb"] < 8.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--corpus", "/no/such/folder"], "/no/such/folder"),
        (["run", "--corpus", "CORPUS", "--recipe", "nope"], "unknown recipe"),
        (["run", "--corpus", "CORPUS", "--set", "train.max_stepz=1"], "unknown key"),
    ],
)
def test_cli_bad_input(tmp_path, capsys, args, message):
    corpus = _synthetic_corpus(tmp_path / "p.jsonl", n=50)
    args = [str(corpus) if a == "CORPUS" else a for a in args] + ["--runs-dir", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err


def test_cli_binary_file(tmp_path, capsys):
    f = tmp_path / "image.png"
    f.write_bytes(bytes(range(256)) * 40)
    assert main(["run", "--corpus", str(f), "--runs-dir", str(tmp_path / "r")]) == 2
    assert str(f) in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out
    assert main([]) == 2
    assert "<command>" in capsys.readouterr().out  # no command: the help
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("tweetlm 0.")


def _run(tmp_path, corpus, *extra):
    return main(
        [
            "run",
            "--corpus",
            *map(str, corpus),
            "--recipe",
            "tiny_cpu",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--no-progress",
            *extra,
        ]
    )


def test_resume_refuses_a_different_corpus_or_model(tmp_path, capsys):
    a = _synthetic_corpus(tmp_path / "a.jsonl", n=400)
    b = _synthetic_corpus(tmp_path / "b.jsonl", n=300)
    assert _run(tmp_path, [a], "--name", "r", "--set", "train.max_steps=5") == 0
    capsys.readouterr()
    assert _run(tmp_path, [b], "--name", "r", "--resume") == 2
    assert "resume with the same corpus" in capsys.readouterr().err
    assert _run(tmp_path, [a], "--name", "r", "--resume", "--set", "model.n_layer=3") == 2
    assert "model.n_layer: 2 -> 3" in capsys.readouterr().err
    # training may be extended on resume
    assert _run(tmp_path, [a], "--name", "r", "--resume", "--set", "train.max_steps=8") == 0
    assert "resumed from step 5" in capsys.readouterr().out


def test_bad_config_and_name_fail_before_any_stage(tmp_path, capsys):
    a = _synthetic_corpus(tmp_path / "a.jsonl", n=100)
    assert _run(tmp_path, [a], "--name", "x", "--set", "model.n_head=3") == 2
    assert "divisible" in capsys.readouterr().err and not (tmp_path / "runs" / "x").exists()
    assert _run(tmp_path, [a], "--name", "../escape") == 2
    assert "plain folder name" in capsys.readouterr().err and not (tmp_path / "escape").exists()


def test_corpus_without_val_or_without_any_good_post(tmp_path, capsys):
    folder = tmp_path / "tw"
    folder.mkdir()
    (folder / "train_text.txt").write_text("".join(f"post {i}\n" for i in range(50)))
    assert _run(tmp_path, [folder], "--name", "nv") == 2
    assert "no validation posts" in capsys.readouterr().err
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1") * 30)
    assert _run(tmp_path, [bad], "--name", "q") == 2
    assert "invalid_utf8 30" in capsys.readouterr().err
    assert len((tmp_path / "runs" / "q" / "data" / "quarantine.jsonl").read_text().splitlines()) == 30


def test_too_few_posts_for_a_validation_share(tmp_path, capsys):
    few = tmp_path / "few.txt"
    few.write_text("".join(f"a plain post number {i} about something else entirely\n" for i in range(4)))
    assert _run(tmp_path, [few], "--name", "few", "--set", "data.val_fraction=0.01") == 2
    err = capsys.readouterr().err
    assert "no validation posts" in err and "data.val_fraction=0.01 x 3 kept posts" in err  # a near-duplicate dropped
