"""Running the ingestion pipeline (layer L1, data): executors, stages, the merged accounting and the outputs.

Four datatrove stages over one work folder (``<out>/_work`` unless given):

1. ``prepare`` (``cfg.task_count()`` tasks): ``PostReader -> Normalize -> LanguageID -> QualityFilter -> PIIScrub ->
   PrepareWriter`` (``steps.py``);
2. ``buckets`` (``buckets.bucket_tasks(cfg)`` tasks, after 1): the posts that share a MinHash LSH band with another, the
   near-duplicate candidates (``buckets.py``);
3. ``decide`` (1 task, after 2): retweets, threads, exact / template / MinHash dedup, corpus shards
   (``decide.py``);
4. ``finalize`` (1 task, after 3): ``FinalizeCorpus`` sums every step's drops and the readers' accounting into
   one ``Ledger``, checks ``in = kept + dropped + quarantined`` per source against the posts actually written,
   and writes ``manifest.json`` (post ids per shard, corpus hash), ``accounting.json``, ``quarantine.jsonl`` and
   the data report (``report.json``, ``report.md``, ``length_hist.png``; see ``report.py``), then deletes the
   tasks' intermediate files unless ``cfg.keep_prepared``.

``cfg.executor`` picks datatrove's ``LocalPipelineExecutor`` (default; ``cfg.workers`` tasks at a time),
``SlurmPipelineExecutor`` or ``RayPipelineExecutor`` for all four stages, chained with ``depends``; the
cluster executors take their own settings (partition, time, ...) through ``executor_kwargs``. On Slurm the four
stages are sbatch array jobs submitted at once (each after the previous with ``afterok``), and ``wait_for_slurm``
follows them to the end (tested on a one-node cluster: ``scripts/slurm_local.sh``, ``tests/test_cluster_slurm.py``).
On Ray, ``run_on_ray`` connects to the cluster and runs the stages one after another, checking each one's
completions (tested on a one-node ``ray start`` cluster: ``tests/test_cluster_ray.py``).
Every executor writes ``completions/`` markers under ``<work>/logs/<stage>``, so a rerun skips finished tasks; the
work folder is cleared first when the paths, the input files (size, modification time) or the settings differ from
the last run (``fingerprint.json``).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from tweetlm.data.ledger import Ledger
from tweetlm.data.pipeline.buckets import LSH_DIR, LshBuckets, bucket_tasks
from tweetlm.data.pipeline.config import PipelineConfig
from tweetlm.data.pipeline.decide import Decide
from tweetlm.data.pipeline.steps import (
    LEDGER_DIR,
    PREPARED_DIR,
    LanguageID,
    Normalize,
    PIIScrub,
    PostReader,
    PrepareWriter,
    QualityFilter,
    usage_written,
    write_json,
)

STEP_ORDER = ("reader", "normalize", "lang", "filter", "pii", "decide")
SPLIT_FILES = ("train.parquet", "val.parquet")


def corpus_hash_of(out_dir: str | Path) -> tuple[str, dict]:
    """``(corpus hash, {shard: {"num_posts", "ids"}})`` of the split files in ``out_dir``.

    The hash is ``data.corpus.write_corpus``'s: SHA-256 over every kept ``(split, source, id, text)`` in file
    order, train then validation, so it changes exactly when the training or validation text changes.
    """
    import pyarrow.parquet as pq

    h = hashlib.sha256()
    shards = {}
    for name in SPLIT_FILES:
        split = name.removesuffix(".parquet")
        t = pq.read_table(Path(out_dir) / name, columns=["id", "source", "text"])
        ids = t.column("id").to_pylist()
        sources, texts = t.column("source").to_pylist(), t.column("text").to_pylist()
        # an update per 8,192 posts: SHA-256 of the concatenation, as one update per post gave (fewer calls, and
        # never a copy of a whole split's text)
        for a in range(0, len(ids), 8192):
            rows = zip(sources[a : a + 8192], ids[a : a + 8192], texts[a : a + 8192])
            h.update("".join(f"{split}\x1f{s}\x1f{pid}\x1f{text}\x1e" for s, pid, text in rows).encode())
        shards[name] = {"num_posts": len(ids), "ids": ids}
    return h.hexdigest(), shards


def stage_seconds(work_dir: str | Path) -> dict[str, float]:
    """Wall seconds of each stage of the last build in ``work_dir``, from the ``usage/<stage>-<rank>.json`` of the
    tasks it ran (``steps.usage_written``; ``build_corpus`` clears them first, so tasks a rerun skipped do not
    count): from the first task's start to the last task's end, by the clocks of the machines that ran them.
    Stages without files (nothing run) are left out."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for f in sorted((Path(work_dir) / "usage").glob("*-*.json")):
        u = json.loads(f.read_text())
        if "start" in u:
            spans.setdefault(f.stem.rsplit("-", 1)[0], []).append((u["start"], u["end"]))
    return {stage: max(e for _, e in t) - min(s for s, _ in t) for stage, t in spans.items()}


def merged_ledger(work_dir: str | Path) -> tuple[Ledger, dict[str, Counter]]:
    """The Ledger of a finished run (readers' accounting plus every step's drops) and the drops per step."""
    ledger_dir = Path(work_dir) / LEDGER_DIR
    reader_files = sorted(ledger_dir.glob("reader-*.json"))
    if not reader_files:
        raise FileNotFoundError(f"no {ledger_dir}/reader-*.json: the prepare stage did not finish")
    readers = [json.loads(f.read_text()) for f in reader_files]
    ledger = Ledger()
    per_step: dict[str, Counter] = {s: Counter() for s in STEP_ORDER}
    for source in sorted({s for r in readers for s in r["sources"]}):  # one order for any number of tasks
        for r in readers:
            c = r["sources"].get(source)
            if c is None:
                continue
            ledger.seen(source, c["in"])
            for reason, n in c["dropped"].items():
                ledger.drop(source, reason, n)
                per_step["reader"][reason] += n
    log = sorted((q for r in readers for q in r["quarantine_log"]), key=lambda q: (q["file"], q["record"]))
    for q in log:
        ledger.quarantine(q["source"], q["file"], q["record"], q["reason"], q.get("excerpt", ""))
    for f in sorted(ledger_dir.glob("*-*.json")):
        step = f.stem.rsplit("-", 1)[0]
        if step == "reader":
            continue
        for source, reason, n in json.loads(f.read_text())["dropped"]:
            ledger.drop(source, reason, n)
            per_step.setdefault(step, Counter())[reason] += n
    return ledger, per_step


class FinalizeCorpus(PipelineStep):
    """Merged accounting, equation check, manifest and data report (see module docstring). One task.

    Raises ``AssertionError`` (from ``Ledger.check``) if the posts written per source differ from the ledger's
    ``kept``: that is a bug in a step, never bad input.
    """

    type = "📊 - STATS"
    name = "accounting, manifest, report"

    def __init__(self, cfg: PipelineConfig, work_dir: str | Path, out_dir: str | Path, paths: list[str]):
        super().__init__()
        self.cfg = cfg
        self.work_dir = str(work_dir)
        self.out_dir = str(out_dir)
        self.paths = [str(p) for p in paths]

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import pyarrow.parquet as pq

        from tweetlm.data.pipeline.report import write_report

        with usage_written(self.work_dir, "finalize", rank):
            out = Path(self.out_dir)
            ledger, per_step = merged_ledger(self.work_dir)
            kept: Counter = Counter()
            for name in SPLIT_FILES:
                kept.update(pq.read_table(out / name, columns=["source"]).column("source").to_pylist())
            ledger.check(dict(kept))
            corpus_hash, shards = corpus_hash_of(out)
            manifest = {"shards": shards, "corpus_hash": corpus_hash, "history": []}
            (out / "manifest.json").write_text(json.dumps(manifest))
            (out / "accounting.json").write_text(json.dumps(ledger.to_dict(), indent=1, ensure_ascii=False))
            with open(out / "quarantine.jsonl", "w", encoding="utf-8") as f:
                for q in ledger.quarantine_log:
                    f.write(json.dumps(q.__dict__, ensure_ascii=False) + "\n")
            ran = stage_seconds(self.work_dir)  # the stages before this one (its own time is not known yet)
            ran = {stage: ran[stage] for stage in STAGES if stage in ran}
            write_report(out, ledger, per_step, corpus_hash, self.cfg, self.paths, ran)
            if not self.cfg.keep_prepared:
                for d in (PREPARED_DIR, LSH_DIR):
                    shutil.rmtree(Path(self.work_dir) / d, ignore_errors=True)
        return iter(())


WORK_FORMAT = 2
"""The layout of the work folder's intermediate files; a work folder of another (older) layout is cleared, not
resumed (2: LSH band hashes under ``lsh/``, from the prepare tasks, which layout 1 never wrote)."""


def _fingerprint(paths: list[str], cfg: PipelineConfig, files: list[Path]) -> dict:
    """What the output depends on: the paths, every input file's size and mtime, the settings and the layout
    of the work folder (``WORK_FORMAT``)."""
    settings = asdict(cfg)
    settings.pop("workers")  # how many run at once does not change the result
    settings["tasks"] = cfg.task_count()  # the count that ran, whether given or the default
    stats = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    fp = {"paths": [str(Path(p).resolve()) for p in paths], "files": stats, "config": settings, "format": WORK_FORMAT}
    return json.loads(json.dumps(fp))


def default_slurm_partition() -> str:
    """The cluster's default partition (``sinfo`` marks it with ``*``). Raises ``ValueError`` when ``sinfo`` is
    missing or the cluster names no default."""
    try:
        names = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise ValueError(
            f"--executor slurm: cannot ask sinfo for the default partition ({e}); name one with --slurm-partition NAME"
        ) from None
    for name in names.stdout.split():
        if name.endswith("*"):
            return name[:-1]
    raise ValueError("--executor slurm: this cluster has no default partition; name one with --slurm-partition NAME")


def _slurm_defaults(executor_kwargs: dict) -> dict:
    """datatrove's Slurm settings that the caller left out: the default partition, a 4-hour limit, and the
    environment of the Python running this (its ``bin`` folder first on ``PATH``, where datatrove's
    ``launch_pickled_pipeline`` is): jobs start in the submitter's environment, which need not have the venv
    activated. The folder must exist on the compute nodes (a shared file system)."""
    out: dict = {}
    if not executor_kwargs.get("partition"):
        out["partition"] = default_slurm_partition()
    if not executor_kwargs.get("time"):
        out["time"] = "04:00:00"
    if not any(executor_kwargs.get(k) for k in ("env_command", "venv_path", "condaenv")):
        out["env_command"] = f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH"
    return out


def make_executors(
    paths: list[str],
    out_dir: str | Path,
    cfg: PipelineConfig,
    work_dir: str | Path,
    quiet: bool = False,
    progress: bool = False,
    **executor_kwargs,
) -> list:
    """The four chained executors (``prepare``, ``buckets``, ``decide``, ``finalize``) for ``cfg.executor``;
    running the last runs (or submits) all four (on Ray, ``run_on_ray`` runs them). ``executor_kwargs`` go to every
    executor (e.g. Slurm ``partition``, ``time``, ``venv_path``; Ray ``cpus_per_task``, ``mem_per_cpu_gb``)."""
    work = Path(work_dir)
    # a Ray task logs to its own file (and its errors to the terminal): quiet there would hide its traceback; its
    # progress bar would reach the terminal as one line a second (run_on_ray prints the stages instead)
    on_ray = cfg.executor == "ray"
    stage_a = [
        PostReader(paths, cfg, work, quiet=quiet and not on_ray, progress=progress and not on_ray, planned=True),
        Normalize(cfg, work),
        LanguageID(cfg, work),
        QualityFilter(cfg, work),
        PIIScrub(cfg, work),
        PrepareWriter(cfg, work),
    ]
    stages = [("prepare", stage_a, cfg.task_count()), ("buckets", [LshBuckets(cfg, work)], bucket_tasks(cfg))]
    stages.append(("decide", [Decide(cfg, work, out_dir)], 1))
    stages.append(("finalize", [FinalizeCorpus(cfg, work, out_dir, paths)], 1))
    if cfg.executor == "local":
        from datatrove.executor import LocalPipelineExecutor as Executor

        def extra(tasks: int) -> dict:
            # fork on Linux: workers start at once (no re-import) and inherit the parent's log settings; datatrove's
            # default, forkserver, stays where fork is unsafe (macOS)
            start = "fork" if sys.platform.startswith("linux") else "forkserver"
            return {"workers": min(tasks, cfg.workers or tasks), "start_method": start}
    elif cfg.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor as Executor

        executor_kwargs = {k: v for k, v in executor_kwargs.items() if v is not None}  # None: the default
        slurm_defaults = _slurm_defaults(executor_kwargs)

        def extra(tasks: int) -> dict:
            return {"workers": -1, "job_name": f"tweetlm_data_{tasks}", **slurm_defaults}
    else:
        from datatrove.executor.ray import RayPipelineExecutor as Executor

        def extra(tasks: int) -> dict:
            return {"workers": cfg.workers or -1}

    executors: list = []
    for name, pipeline, tasks in stages:
        kw = {**extra(tasks), **executor_kwargs}
        executors.append(
            Executor(
                pipeline,
                tasks=tasks,
                logging_dir=str(work / "logs" / name),
                depends=executors[-1] if executors else None,
                **kw,
            )
        )
    if cfg.executor == "slurm" and "job_name" not in executor_kwargs:
        for (name, _, _), ex in zip(stages, executors):
            ex.job_name = f"tweetlm_{name}"  # squeue shows the stage
    return executors


def run_on_ray(executors: list, address: str | None = None, progress: bool = False) -> None:
    """Run ``make_executors``' Ray stages on a Ray cluster, one after another.

    Connects with ``ray.init(address)`` unless this process already is (and disconnects at the end): ``None``
    takes ``RAY_ADDRESS``, else the cluster ``ray start`` left on this machine, else starts a local one on every
    core (Ray's rule). Each stage's completion markers are checked before the next starts: datatrove's
    ``depends`` would wait forever (polling every 2 minutes) on a stage whose tasks failed. ``progress`` prints a
    line when a stage starts and ends.

    Raises ``ValueError`` when no node of the cluster has the CPUs and memory one task asks for (``cpus_per_task``,
    ``mem_per_cpu_gb``: Ray would wait for them forever), ``RuntimeError`` naming the stage and its task logs when
    a stage ends with tasks missing.
    """
    import time

    import ray

    connect = not ray.is_initialized()
    if connect:
        ray.init(address=address)
    try:
        for ex in executors:
            stage = Path(ex.logging_dir.path).name
            cpus, mem = ex.cpus_per_task, ex.mem_per_cpu_gb * ex.cpus_per_task * 2**30
            nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
            if not any(r.get("CPU", 0) >= cpus and r.get("memory", 0) >= mem for r in nodes):
                have = ", ".join(f"{r.get('CPU', 0):g} CPUs {r.get('memory', 0) / 2**30:.1f} GiB" for r in nodes)
                raise ValueError(
                    f"Ray stage {stage}: one task asks for {cpus} CPUs and {mem / 2**30:.1f} GiB, no node of the "
                    f"cluster has them ({have or 'no node alive'}); lower --ray-cpus-per-task or --ray-mem-per-cpu-gb"
                )
            if progress:
                print(f"ray: {stage} ({ex.world_size} task(s)) ...", flush=True)
            t0 = time.perf_counter()
            ex.run()
            missing = ex.get_incomplete_ranks(skip_completed=True)
            if progress and not missing:
                print(f"ray: {stage} done, {time.perf_counter() - t0:.1f}s", flush=True)
            if missing:
                raise RuntimeError(
                    f"Ray stage {stage}: {len(missing)} of {ex.world_size} task(s) failed (ranks {missing[:10]}); "
                    f"see their errors above and {ex.logging_dir.path}/logs/"
                )
    finally:
        if connect:
            ray.shutdown()


def build_corpus(
    paths: list[str | Path],
    out_dir: str | Path,
    cfg: PipelineConfig,
    work_dir: str | Path | None = None,
    quiet: bool = True,
    progress: bool = False,
    wait: bool = False,
    ray_address: str | None = None,
    **executor_kwargs,
) -> dict:
    """Run the pipeline on the posts under ``paths`` into ``out_dir``; returns the data report (``report.json``).

    Local execution waits for all four stages; with ``cfg.executor`` ``"slurm"``/``"ray"`` the jobs are
    submitted (Slurm) or run on the Ray cluster, and the report is returned once ``report.json`` exists (else
    ``{"submitted": True, "job_ids": {stage: Slurm job id}, ...}``); with ``wait`` a Slurm build is followed until
    its last stage completes (``wait_for_slurm``, which raises ``RuntimeError`` when a stage fails). ``quiet``
    silences datatrove's log (terminal and ``<work>/logs/<stage>/logs/``; the stats are still written to
    ``<work>/logs/<stage>/stats.json``); ``progress`` shows task 0's posts read. On Ray the stages run one after
    another on the cluster at ``ray_address`` (``run_on_ray``, which raises ``RuntimeError`` when a stage fails).

    Raises ``ValueError`` for bad settings or paths (before any task starts: ``data.formats.dispatch.plan_corpus``), and
    when ``out_dir`` or the work folder is inside (or is) one of ``paths``.
    """
    from tweetlm.data.formats.dispatch import plan_corpus

    cfg.validate()
    if cfg.executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError("--executor ray needs the ray package: pip install ray") from None
        # Ray workers start in the folder of `ray start`, not this one: they get absolute paths
        paths = [Path(p).resolve() for p in paths]
        out_dir, work_dir = Path(out_dir).resolve(), Path(work_dir).resolve() if work_dir else None
    paths = [str(p) for p in paths]
    out = Path(out_dir)
    work = Path(work_dir) if work_dir else out / "_work"
    for what, d in (("output folder", out), ("work folder", work)):
        if d.exists() and not d.is_dir():
            raise ValueError(f"the {what} {d} is a file, not a folder: name a folder (it is made if missing)")
        for p in paths:
            if d.resolve().is_relative_to(Path(p).resolve()):
                raise ValueError(
                    f"the {what} {d} is inside the input path {p}: the build would read its own output; "
                    "put it outside every input path"
                )
    plan = plan_corpus(paths, cfg.column_map())
    fp = _fingerprint(paths, cfg, [f for f, _, _ in plan])
    fp_file = work / "fingerprint.json"
    if work.exists() and (not fp_file.exists() or json.loads(fp_file.read_text()) != fp):
        shutil.rmtree(work)
    out.mkdir(parents=True, exist_ok=True)
    write_json(fp_file, fp)
    shutil.rmtree(work / "usage", ignore_errors=True)  # times of this run's tasks only (stage_seconds)
    report = out / "report.json"
    if not (work / "logs" / "finalize" / "completions" / "00000").exists():
        report.unlink(missing_ok=True)  # a report of an earlier run must not stand for this one
    from loguru import logger

    if quiet:  # datatrove logs with loguru; its stats still go to <work>/logs/<stage>/stats.json
        logger.disable("datatrove")
    try:
        executors = make_executors(paths, out, cfg, work, quiet=quiet, progress=progress, **executor_kwargs)
        if cfg.executor == "ray":
            run_on_ray(executors, ray_address, progress=progress)
        else:
            executors[-1].run()
    except subprocess.CalledProcessError as e:  # sbatch refused a job; its message is above
        raise RuntimeError(f"sbatch refused a job (exit {e.returncode}): see its error above") from None
    finally:
        logger.enable("datatrove")
    if cfg.executor == "slurm" and wait:
        wait_for_slurm(executors, work, progress=progress)
    if not report.exists():
        job_ids = {}
        if cfg.executor == "slurm":
            job_ids = {s: e.job_id for s, e in zip(STAGES, executors) if e.job_id not in (None, -1)}
        return {"submitted": True, "work_dir": str(work), "executor": cfg.executor, "job_ids": job_ids}
    return json.loads(report.read_text())


STAGES = ("prepare", "buckets", "decide", "finalize")  # make_executors' order


def _squeue() -> list[tuple[str, str, str, set[str]]]:
    """This user's Slurm jobs: ``(array job id, state, reason, ids of the jobs it depends on)``, one per line."""
    import getpass
    import re

    cmd = ["squeue", "-h", "-u", getpass.getuser(), "-o", "%F|%T|%r|%E"]
    lines = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    return [(j, st, r, set(re.findall(r":(\d+)", dep))) for j, st, r, dep in (ln.split("|", 3) for ln in lines)]


def wait_for_slurm(executors: list, work_dir: str | Path, poll_s: float = 2.0, progress: bool = False) -> None:
    """Block until the submitted Slurm build's ``finalize`` stage has written its completion marker.

    Follows the array jobs of ``executors`` (``make_executors``' three, after ``run()``) with ``squeue`` every
    ``poll_s`` seconds; ``progress`` prints the completed tasks per stage when they change. When a stage's job
    ends with tasks missing, Slurm keeps the stages after it pending forever (reason ``DependencyNeverSatisfied``):
    they are cancelled, with datatrove's merge-stats jobs waiting on them, and ``RuntimeError`` names the stage and
    its Slurm logs (``<work>/logs/<stage>/slurm_logs/``).
    """
    import time

    work = Path(work_dir)
    ids = {s: str(e.job_id) for s, e in zip(STAGES, executors) if e.job_id not in (None, -1)}

    def completed() -> dict[str, int]:
        return {s: len(list((work / "logs" / s / "completions").glob("*"))) for s in STAGES}

    tasks = {s: e.world_size for s, e in zip(STAGES, executors)}
    shown = None
    while True:
        done = completed()
        if done["finalize"] >= 1:
            return
        if progress and done != shown:
            print("slurm: " + ", ".join(f"{s} {done[s]}/{tasks[s]}" for s in STAGES), flush=True)
            shown = done
        jobs = _squeue()
        queued = {j for j, _, _, _ in jobs}
        stuck = any(j in ids.values() and r == "DependencyNeverSatisfied" for j, _, r, _ in jobs)
        if stuck or not queued & set(ids.values()):
            done = completed()
            if done["finalize"] >= 1:
                return
            failed = next(s for s in STAGES if done[s] < tasks[s])
            ours, grew = set(ids.values()), True
            while grew:  # the stages after it and every job waiting on one of them
                more = {j for j, _, _, deps in jobs if deps & ours}
                grew, ours = not more <= ours, ours | more
            left = sorted(ours & queued, key=int)
            if left:
                subprocess.run(["scancel", *left], check=False, timeout=60)
            raise RuntimeError(
                f"Slurm stage {failed} (job {ids.get(failed, '?')}) ended with {done[failed]}/{tasks[failed]} tasks "
                f"completed; see {work / 'logs' / failed / 'slurm_logs'}/"
                + (f"; cancelled the jobs waiting on it: {', '.join(left)}" if left else "")
            )
        time.sleep(poll_s)
