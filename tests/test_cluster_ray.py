"""The ingestion pipeline on a real Ray cluster (issue 15): ``ray start --head`` on this machine (2 CPUs, its own
temp folder, started in that folder so the workers do not share the test's working directory) runs ``tweetlm data
build --executor ray`` on ../shared/formats and two corpora (TweetEval irony, English; XLM-T German), given as
relative paths; the corpus (hash in manifest.json, split files) and the accounting equal the local executor's. A
stage whose tasks fail ends the build with an error (datatrove's ``depends`` alone would wait forever), and a task
asking for more CPUs than a node has is refused before anything is submitted.

Needs the ``ray`` package (``make install`` installs it with the ``ray`` extra) and ../shared; skips without.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SHARED

pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")

BIN = Path(sys.executable).parent
CORPORA = SHARED / "corpora"
INPUTS = [SHARED / "formats", CORPORA / "tweeteval" / "irony", CORPORA / "xlmt_umsab_sentiment" / "german"]


@pytest.fixture(scope="module")
def ray_cluster():
    """``(GCS address, temp folder)`` of a one-node Ray cluster; ``ray start --block`` is stopped at the end
    (SIGTERM: it stops the processes it started, and nothing else on the machine, unlike ``ray stop``)."""
    if not all(p.is_dir() for p in INPUTS):
        pytest.skip(f"shared formats/corpora not found under {SHARED} (they sit beside the repo)")
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit in 107 chars
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--port=0", "--num-cpus=2", "--include-dashboard=false"]
    cmd += ["--disable-usage-stats", f"--temp-dir={temp}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = open(temp / "ray_start.log", "w")
    proc = subprocess.Popen(cmd, cwd=temp, stdout=log, stderr=subprocess.STDOUT, env=env)
    address_file = temp / "ray_current_cluster"  # written once the head node is up
    try:
        deadline = time.monotonic() + 120
        while not address_file.exists():
            assert proc.poll() is None, (temp / "ray_start.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "ray start: no cluster after 120 s"
            time.sleep(0.5)
        time.sleep(0.5)  # the file is written after the node started, whole lines at once
        yield address_file.read_text().strip(), temp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_data_build_on_ray_equals_local(ray_cluster, tmp_path):
    from tweetlm.data.pipeline.build import build_corpus
    from tweetlm.data.pipeline.config import PipelineConfig

    address, temp = ray_cluster
    rel = [os.path.relpath(p, tmp_path) for p in INPUTS]  # relative: the workers run in another folder
    cmd = [str(BIN / "tweetlm"), "data", "build", "--corpus", *rel, "--out", "on_ray", "--tasks", "2"]
    cmd += ["--executor", "ray", "--ray-address", address]  # with progress: a line per stage
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    ray_s = time.perf_counter() - t0
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ray: prepare (2 task(s)) ..." in run.stdout and "ray: finalize done" in run.stdout
    t0 = time.perf_counter()
    local = build_corpus(INPUTS, tmp_path / "local", PipelineConfig(tasks=2))
    local_s = time.perf_counter() - t0
    print(f"ray {ray_s:.1f}s (CLI, with connecting), local {local_s:.1f}s (in process)")

    on_ray, here = tmp_path / "on_ray", tmp_path / "local"
    manifest = json.loads((on_ray / "manifest.json").read_text())
    assert manifest["corpus_hash"] == json.loads((here / "manifest.json").read_text())["corpus_hash"]
    assert manifest["corpus_hash"] == local["corpus_hash"] and f"corpus hash {local['corpus_hash'][:16]}" in run.stdout
    assert json.loads((on_ray / "accounting.json").read_text()) == json.loads((here / "accounting.json").read_text())
    for split in ("train.parquet", "val.parquet"):
        assert pq.read_table(on_ray / split).equals(pq.read_table(here / split))
    report = json.loads((on_ray / "report.json").read_text())
    assert report["equation"] == local["equation"] and report["kept"] == local["kept"] > 5000
    assert report["records_in"] == report["kept"] + sum(report["dropped"].values()) + report["quarantined"]
    # it ran on that cluster: datatrove's Ray executor (its settings) and 2 + 2 + 1 + 1 task logs, and the CLI was a
    # driver of this Ray session
    work = on_ray / "_work" / "logs"
    assert json.loads((work / "prepare" / "executor.json").read_text())["cpus_per_task"] == 1
    stages = ("prepare", "buckets", "decide", "finalize")
    assert [len(list((work / s / "completions").iterdir())) for s in stages] == [2, 2, 1, 1]
    assert (work / "prepare" / "logs" / "task_00001.log").exists()
    assert list(temp.glob("session_*/logs/python-core-driver-*"))


RAY_ERRORS = """
import json, sys
from tweetlm.data.pipeline.build import make_executors, run_on_ray
from tweetlm.data.pipeline.config import PipelineConfig

address, work = sys.argv[1], sys.argv[2]
out = {}
cfg = PipelineConfig(executor="ray")
try:  # one task asks for 3 CPUs on a 2-CPU cluster: refused, nothing submitted
    run_on_ray(make_executors(["posts"], work + "/o1", cfg, work + "/w1", cpus_per_task=3), address)
except ValueError as e:
    out["cpus"] = str(e)
try:  # the input vanished after planning: the prepare task fails, decide must not wait for it
    run_on_ray(make_executors([work + "/gone"], work + "/o2", cfg, work + "/w2"), address)
except RuntimeError as e:
    out["failed"] = str(e)
print(json.dumps(out))
"""


def test_ray_stage_failure_and_oversized_task_end_with_an_error(ray_cluster, tmp_path):
    address, _ = ray_cluster
    cmd = [sys.executable, "-c", RAY_ERRORS, address, str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    assert "asks for 3 CPUs" in out["cpus"] and "2 CPUs" in out["cpus"] and "--ray-cpus-per-task" in out["cpus"]
    assert not (tmp_path / "w1" / "logs" / "prepare" / "executor.json").exists()
    assert out["failed"].startswith("Ray stage prepare: 1 of 1 task(s) failed")
    assert not (tmp_path / "w2" / "logs" / "decide").exists()
    assert "does not exist" in run.stderr  # the task's error, streamed from the Ray worker
    assert "does not exist" in (tmp_path / "w2" / "logs" / "prepare" / "logs" / "task_00000.log").read_text()
