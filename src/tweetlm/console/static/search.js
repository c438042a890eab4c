/* Search page: POST /v1/search; each hit with its matched terms highlighted (text nodes and <mark>, never
   innerHTML), time, language, author, kind, how many retweets/duplicates it stands for, and its post JSON. */
"use strict";

TL.page(async (cfg) => {
  const { el } = TL;
  if (!cfg.search) {
    TL.notEnabled("Search", "--search-index DIR", "Build an index with tweetlm search build first.");
    return;
  }
  const form = document.getElementById("search-form");
  const box = document.getElementById("error");
  const results = document.getElementById("results");
  const q = (name) => form.elements.namedItem(name);

  // a query in the address (search.html?query=...) runs at once; each search is written back there
  const params = new URLSearchParams(location.search);
  for (const name of ["query", "mode", "k", "since", "until", "as_of", "lang"]) {
    if (params.has(name)) q(name).value = params.get(name);
  }
  for (const kind of params.getAll("kind")) {
    const c = form.querySelector(`input[name="kind"][value="${CSS.escape(kind)}"]`);
    if (c) c.checked = true;
  }

  function body() {
    const b = { query: q("query").value, mode: q("mode").value, k: TL.num(q("k"), 10) };
    for (const name of ["since", "until", "as_of"]) {
      if (q(name).value.trim()) b[name] = q(name).value.trim();
    }
    b.lang = TL.list(q("lang").value);
    b.kind = [...form.querySelectorAll('input[name="kind"]:checked')].map((c) => c.value);
    return b;
  }

  function validate(b) {
    const errs = [];
    if (!b.query.trim()) errs.push(["query", "Type something to search for."]);
    if (!Number.isInteger(b.k) || b.k < 1 || b.k > 100) errs.push(["k", "Results: a whole number from 1 to 100."]);
    return errs;
  }

  function hitNode(h, rank) {
    const ranks = [
      h.bm25_rank ? `BM25 #${h.bm25_rank}` : null,
      h.dense_rank ? `dense #${h.dense_rank}` : null,
      `score ${Number(h.score).toFixed(4)}`,
    ].filter(Boolean).join(" \u00b7 ");
    return el("li", { class: "hit", dataset: { id: h.id, rank: String(rank) } },
      el("p", { class: "post-text" }, TL.highlight(h.text, h.matched_terms)),
      el("p", { class: "meta" },
        el("span", {}, "by ", el("span", { class: "author" }, h.author_id || "unknown author")),
        TL.timeEl(h.created_at),
        el("span", { class: "lang" }, `language ${h.lang || "unknown"}`),
        el("span", { class: "kind" }, h.kind),
        h.collapsed ? el("span", { class: "collapsed", dataset: { collapsed: String(h.collapsed) } },
          `+${h.collapsed} retweet${h.collapsed === 1 ? "" : "s"}/duplicate${h.collapsed === 1 ? "" : "s"} hidden`)
          : null,
        el("span", {}, ranks),
        h.matched_terms && h.matched_terms.length
          ? el("span", { class: "terms" }, `matched: ${h.matched_terms.join(", ")}`) : null,
        el("a", { href: TL.postHref(h.id), class: "post-json", "aria-label": `post ${h.id} as JSON` },
          `post ${h.id} JSON`)));
  }

  let controller = null;
  async function run() {
    TL.hideError(box);
    TL.clearFieldErrors(form);
    const b = body();
    const errs = validate(b);
    for (const [name, msg] of errs) TL.fieldError(form, name, msg);
    if (errs.length) {
      q(errs[0][0]).focus();
      return;
    }
    const url = new URLSearchParams();
    for (const [k, v] of Object.entries(b)) {
      for (const x of [].concat(v)) if (x !== "" && x !== undefined) url.append(k, String(x));
    }
    history.replaceState(null, "", `?${url}`);
    if (controller) controller.abort();
    controller = new AbortController();
    results.setAttribute("aria-busy", "true");
    TL.put(results, el("p", { class: "busy" }, "Searching\u2026"));
    try {
      const res = await TL.api("/v1/search", { body: b, signal: controller.signal });
      const hits = res.data;
      TL.put(results,
        el("h2", { id: "results-title" }, `${hits.length} result${hits.length === 1 ? "" : "s"} for \u201c${res.query}\u201d`),
        hits.length ? el("ol", { class: "hits", "aria-labelledby": "results-title" }, hits.map((h, i) => hitNode(h, i + 1)))
          : el("p", {}, "No post matches. Widen the time range, or remove a filter."));
    } catch (err) {
      if (err.name === "AbortError") return;
      TL.put(results);
      TL.showFormError(form, box, err);
    } finally {
      results.removeAttribute("aria-busy");
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    run();
  });
  if (q("query").value.trim()) run();
});
