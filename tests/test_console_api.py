"""The HTTP API behind the browser console (issue 14): runs, weighted length, config, and the key on every path.

A real uvicorn server on 127.0.0.1; the pages themselves are driven in Chromium by ``test_console_browser.py``.
"""

from __future__ import annotations

import base64
import json

import pytest

pytest.importorskip("uvicorn", reason="the console needs the serve extra")
import httpx  # noqa: E402
from loopback import LoopbackServer  # noqa: E402

from tweetlm.data.twitter_text import weighted_length  # noqa: E402
from tweetlm.inference.engine import Engine  # noqa: E402
from tweetlm.model.config import ModelConfig  # noqa: E402
from tweetlm.model.gpt import GPT  # noqa: E402
from tweetlm.serve.app import ServeConfig, create_app  # noqa: E402
from tweetlm.tokenizer.bpe import TokenizerConfig, train_tokenizer  # noqa: E402

KEY = "console-key-1"


def _fake_run(root, name: str, steps: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = root / name
    (run / "data").mkdir(parents=True)
    (run / "checkpoints" / f"step_{steps:07d}").mkdir(parents=True)
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 5.0 - 0.1 * s, "tokens": 1024 * s}) + "\n" for s in range(1, steps + 1))
    )
    (run / "eval.json").write_text(json.dumps({"overall": {"bpb": 2.5}, "per_source": {"a": {"bpb": 2.4}}}))
    acc = {"sources": {"a": {"in": 5, "kept": 3, "dropped": {"duplicate": 1}, "quarantined": 1}}}
    (run / "data" / "accounting.json").write_text(json.dumps(acc))
    (run / "data" / "report.json").write_text(json.dumps({"languages": {"en": 3}, "equation": ["a: 5 in = ..."]}))
    pq.write_table(pa.table({"text": ["x" * 5, "y" * 25, "z" * 500]}), run / "data" / "train.parquet")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    _fake_run(runs, "alpha", 12)
    (runs / "not_a_run").mkdir()
    # half-written and odd run folders (a new user's findings): a torn last line, a diverged NaN loss, an
    # eval.json that is not an object, a name with a space and another script, a symlink to a run kept elsewhere
    _fake_run(runs, "torn", 3)
    with open(runs / "torn" / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 4.')
    _fake_run(runs, "diverged", 2)
    with open(runs / "diverged" / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": NaN}\n5\n')
    (runs / "diverged" / "eval.json").write_text("[1, 2, 3]")
    _fake_run(runs, "my run 日本", 2)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    _fake_run(elsewhere, "kept_elsewhere", 2)
    (runs / "linked").symlink_to(elsewhere / "kept_elsewhere")
    tok = train_tokenizer([f"rain and coffee number {i}" for i in range(50)], TokenizerConfig(vocab_size=300))
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_embd=32, n_head=2, max_seq_len=64)
    engine = Engine(GPT.build(cfg, seed=0), tok, model_name="tiny")
    app = create_app(engine, ServeConfig(api_keys=[KEY]), runs_dir=runs)
    with LoopbackServer(app) as url:
        yield url


def _basic(key: str, user: str = "me") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


def test_every_path_but_health_needs_the_key_as_bearer_or_basic(server):
    for path in ("/v1/console/config", "/v1/runs", "/console/", "/openapi.json"):
        r = httpx.get(server + path)
        assert r.status_code == 401, path
        schemes = [h.split()[0] for h in r.headers.get_list("www-authenticate")]
        # a browser asks for a page's key, and repeats an API call with it (its realm's Basic challenge)
        assert schemes == (["Bearer", "Basic"] if path.startswith("/v1/") else ["Basic"]), path
        assert httpx.get(server + path, headers=_basic("wrong")).status_code == 401
    assert httpx.get(server + "/health").status_code == 200
    assert httpx.get(server + "/v1/runs", headers=_basic(KEY)).status_code == 200
    assert httpx.get(server + "/v1/runs", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    r = httpx.get(server + "/", headers=_basic(KEY))
    assert r.status_code == 307 and r.headers["location"] == "/console/"


def test_runs_summary_and_metrics(server):
    auth = _basic(KEY)
    runs = httpx.get(server + "/v1/runs", headers=auth).json()["data"]
    names = ["alpha", "diverged", "linked", "my run 日本", "torn"]
    assert [r["name"] for r in runs] == names  # a folder no stage wrote is not a run
    assert runs[0] == {**runs[0], "steps": 12, "bpb": 2.5, "checkpoints": 1, "has_data": True, "problems": []}
    by_name = {r["name"]: r for r in runs}
    assert by_name["torn"]["steps"] == 3 and by_name["diverged"]["final_loss"] is None  # NaN is no number
    assert by_name["diverged"]["problems"] == ["eval.json: not a JSON object"] and by_name["diverged"]["bpb"] is None
    for name in names:  # every listed run opens, with its metrics
        r = httpx.get(server + f"/v1/runs/{name}", headers=auth)
        assert r.status_code == 200, (name, r.text)
        rows = httpx.get(server + f"/v1/runs/{name}/metrics", headers=auth).json()["data"]
        assert all(isinstance(x["step"], int) for x in rows), name
    assert [x["loss"] for x in httpx.get(server + "/v1/runs/diverged/metrics", headers=auth).json()["data"]][-1] is None
    run = httpx.get(server + "/v1/runs/alpha", headers=auth).json()
    assert run["accounting"]["a"] == {"in": 5, "kept": 3, "dropped": {"duplicate": 1}, "quarantined": 1}
    assert run["languages"] == {"en": 3} and run["checkpoints"] == ["step_0000012"]
    assert sum(run["lengths"]["counts"]) == 3 and run["lengths"]["counts"][-1] == 1  # 500 chars: the last bin
    rows = httpx.get(server + "/v1/runs/alpha/metrics", headers=auth).json()["data"]
    assert [r["step"] for r in rows] == list(range(1, 13))
    for bad in ("not_a_run", "..", "..%2F..%2Fetc", ".hidden", "nope"):
        r = httpx.get(server + f"/v1/runs/{bad}", headers=auth)
        assert r.status_code == 404, bad


def test_weighted_length_agrees_with_twitter_text_and_config_lists_features(server):
    auth = _basic(KEY)
    for text in ("hello", "日本語のテキスト", "a link https://example.com/x and 😀👍🏽", "x" * 300, ""):
        r = httpx.post(server + "/v1/tweets/weighted_length", json={"text": text}, headers=auth).json()
        assert r["weighted_length"] == weighted_length(text) and r["valid"] == (0 < weighted_length(text) <= 280)
    cfg = httpx.get(server + "/v1/console/config", headers=auth).json()
    assert cfg["model"] == "tiny" and cfg["auth"] and cfg["runs"] and not cfg["search"]
    assert cfg["ads"] == {"safety": False, "copy": False, "place": False}
    assert httpx.get(server + "/v1/posts/1", headers=auth).json()["error"]["code"] == "not_enabled"
