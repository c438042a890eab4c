"""The browser console and the API it needs beyond the OpenAI routes (layer L5, serve).

``register_console(app, ...)`` adds:

- ``GET /`` (a redirect) and ``/console/...``: the console's static pages (``tweetlm/console/static``: plain
  HTML, CSS and JavaScript files shipped in the package; no build step). They call only the public HTTP API.
- ``GET /v1/console/config``: what this server serves (model, search, ads parts, runs), for the pages to show
  what is available.
- ``POST /v1/tweets/weighted_length``: ``{"text"}`` -> the twitter-text v3 weighted length (``data.twitter_text``),
  so a live counter in a page agrees with the server by construction.
- ``GET /v1/runs``, ``GET /v1/runs/{name}``, ``GET /v1/runs/{name}/metrics``: the run folders under
  ``--runs-dir`` (``jobs.report``: accounting, languages, lengths, bits per byte, samples, checkpoints, and every
  ``metrics.jsonl`` row). A name is one folder directly under the runs folder (or a symlink there); anything
else is a 404. A torn or unreadable file of a run is skipped and named in the run's ``problems``.

Access: the same keys as the API (``serve.app``); a browser that opens a page without one is asked for it once
per session (HTTP Basic: any user name, the key as the password).
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

STATIC = Path(str(files("tweetlm.console") / "static"))


class LengthRequest(BaseModel):
    text: str = Field(max_length=100_000)


def register_console(app: FastAPI, api_error, features: dict, runs_dir: str | Path | None) -> None:
    """Add the console's pages and routes to ``app``. ``features``: what ``GET /v1/console/config`` reports;
    ``runs_dir``: the folder of run folders (``None``: the runs routes answer 404 ``not_enabled``)."""
    from tweetlm.data.twitter_text import parse_tweet

    app.mount("/console", StaticFiles(directory=STATIC, html=True, check_dir=False), name="console")

    @app.get("/", include_in_schema=False)
    async def root():
        return RedirectResponse("/console/")

    @app.get("/v1/console/config")
    async def config():
        return {"object": "console.config", **features, "runs": runs_dir is not None}

    @app.post("/v1/tweets/weighted_length")
    async def weighted_length(req: LengthRequest):
        try:
            r = parse_tweet(req.text)
        except (TypeError, ValueError) as e:
            raise api_error(400, f"text: {e}", param="text") from None
        return {
            "object": "tweet.length",
            "weighted_length": r.weighted_length,
            "valid": r.valid,
            "permillage": r.permillage,
            "max_weighted_length": 280,
        }

    def not_enabled():
        return api_error(404, "runs are not served here; start tweetlm serve with --runs-dir DIR", code="not_enabled")

    def run_folder(name: str) -> Path:
        if runs_dir is None:
            raise not_enabled()
        from tweetlm.jobs.report import is_run

        root = Path(runs_dir)
        # a run is a folder directly under the runs folder, by name (spaces, any script; a symlink to a run kept
        # elsewhere too, as the list shows it); never a path: no separator, no "..", no NUL
        ok = name not in ("", ".", "..") and not any(c in name for c in "/\\\0")
        if not ok or not is_run(root / name):
            raise api_error(404, f"no run {name!r} under {runs_dir} (GET /v1/runs lists them)", param="name",
                            code="run_not_found")  # fmt: skip
        return root / name

    @app.get("/v1/runs")
    async def runs():
        from tweetlm.jobs.report import list_runs

        if runs_dir is None:
            raise not_enabled()
        return {"object": "list", "runs_dir": str(runs_dir), "data": await asyncio.to_thread(list_runs, runs_dir)}

    @app.get("/v1/runs/{name}")
    async def run(name: str):
        from tweetlm.jobs.report import run_summary

        return {"object": "run", **(await asyncio.to_thread(run_summary, run_folder(name)))}

    @app.get("/v1/runs/{name}/metrics")
    async def run_metrics(name: str):
        from tweetlm.jobs.report import run_metrics as metrics

        return {"object": "list", "name": name, "data": await asyncio.to_thread(metrics, run_folder(name))}
