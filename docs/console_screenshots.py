"""Take the README's console screenshots from a running server (``make console`` after ``make demo``).

    .venv/bin/python docs/console_screenshots.py --url http://127.0.0.1:8000 --key KEY --out docs

Drives Debian's Chromium with Playwright (no browser download): the Search page with a query, and the Ad studio
with a brief and its variants (each constraint's mark; the placement preview of the first variant is run too). Writes
``console_search.png`` and ``console_ads.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--key", default="", help="the server's API key (none: an open server)")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--query", default="flight delayed again")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium on PATH (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        creds = {"username": "console", "password": args.key} if args.key else None
        page = browser.new_context(http_credentials=creds, viewport={"width": 1100, "height": 900}).new_page()
        page.goto(f"{args.url}/console/search.html")
        page.fill("#query", args.query)
        page.click("#search-form button[type=submit]")
        page.wait_for_selector("#results li", timeout=120_000)
        page.screenshot(path=str(args.out / "console_search.png"), full_page=False)
        page.goto(f"{args.url}/console/ads.html")
        page.fill("#product", "Delta")
        page.fill("#message", "more legroom on every flight")
        page.fill("#required_terms", "legroom")
        page.fill("#hashtag", "#travel")
        page.fill("#cta", "Book at delta.com")
        page.fill("#banned_terms", "cheap")
        page.click("#copy-button")
        page.wait_for_selector("#variants li, #rejected li", timeout=600_000)
        first = page.locator("#variants li button", has_text="Preview placement").first
        if first.count():
            first.click()
            page.wait_for_timeout(4000)
        page.set_viewport_size({"width": 1100, "height": 1300})
        page.evaluate("document.getElementById('copy-results').scrollIntoView()")
        page.screenshot(path=str(args.out / "console_ads.png"), full_page=False)
        browser.close()
    print(f"wrote {args.out / 'console_search.png'} and {args.out / 'console_ads.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
