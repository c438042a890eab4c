/* Runs page: the run folders of GET /v1/runs; for one run (runs.html?run=NAME, GET /v1/runs/{name}) the data
   accounting per source (in = kept + dropped + quarantined, checked here), languages, the post-length histogram,
   bits per byte overall and per source, samples and checkpoints, and the training loss drawn from every row of
   metrics.jsonl (GET /v1/runs/{name}/metrics) with uPlot: drag across the chart to zoom, double-click to zoom
   out, or type a step range. A second run's loss can be drawn on the same chart. */
"use strict";

const COLORS = ["#0b5cad", "#c2410c", "#116329", "#8250df"];

TL.page(async (cfg) => {
  const { el } = TL;
  if (!cfg.runs) {
    TL.notEnabled("Runs", "--runs-dir DIR",
      "By default the server reads ./runs when it is started in a folder that has one.");
    return;
  }
  const listSection = document.getElementById("run-list");
  const runSection = document.getElementById("run");
  const box = document.getElementById("error");
  const fmt = (x, digits = 3) => (x === null || x === undefined || Number.isNaN(x) ? "\u2013" : Number(x).toFixed(digits));
  const int = (x) => (x === null || x === undefined ? "\u2013" : Number(x).toLocaleString("en-US"));
  const wrap = (label, table) => el("div", { class: "table-wrap", role: "region", "aria-label": label, tabindex: "0" }, table);

  const listing = await TL.api("/v1/runs");
  const runs = listing.data;
  const name = new URLSearchParams(location.search).get("run");

  TL.put(listSection, el("h2", { id: "run-list-title" }, "Run folders"),
    el("p", { class: "hint" }, `Under ${listing.runs_dir}: ${runs.length} run${runs.length === 1 ? "" : "s"}.`),
    runs.length ? wrap("Run folders", el("table", { id: "runs-table" },
      el("thead", {}, el("tr", {}, ["run", "steps", "final loss", "bits/byte", "checkpoints", "data", "modified"]
        .map((h, i) => el("th", { scope: "col", class: i && i < 5 ? "num" : null }, h)))),
      el("tbody", {}, runs.map((r) => el("tr", { dataset: { run: r.name } },
        el("th", { scope: "row" }, el("a", { href: `?run=${encodeURIComponent(r.name)}`,
          "aria-current": r.name === name ? "page" : null }, r.name)),
        el("td", { class: "num" }, int(r.steps)), el("td", { class: "num" }, fmt(r.final_loss)),
        el("td", { class: "num" }, fmt(r.bpb)), el("td", { class: "num" }, int(r.checkpoints)),
        el("td", {}, r.has_data ? "yes" : "no"),
        el("td", {}, r.modified ? new Date(r.modified * 1000).toISOString().slice(0, 16).replace("T", " ") : "\u2013"))))))
      : el("p", {}, "No run folders yet: tweetlm run writes one."));
  if (!name) {
    if (runs.length) listSection.append(el("p", {}, "Pick a run to see its report."));
    return;
  }

  runSection.hidden = false;
  TL.put(runSection, el("h2", { id: "run-title" }, `Run ${name}`), el("p", { class: "busy" }, "Loading\u2026"));
  const [run, metrics] = await Promise.all([
    TL.api(`/v1/runs/${encodeURIComponent(name)}`),
    TL.api(`/v1/runs/${encodeURIComponent(name)}/metrics`),
  ]);
  document.title = `${name} \u00b7 Runs \u00b7 tweetlm console`;
  const parts = [el("h2", { id: "run-title" }, `Run ${name}`)];
  if (run.problems && run.problems.length) {
    // a half-written folder (a run still going, or killed): say which files could not be read
    parts.push(el("div", { class: "error", role: "status", id: "run-problems" },
      el("p", {}, "Some files of this run could not be read; they are left out below:"),
      el("ul", {}, run.problems.map((p) => el("li", {}, p)))));
  }
  const missing = (what) => el("p", { class: "hint" }, `No ${what} in this run folder (yet).`);

  // --- loss ------------------------------------------------------------------------------------------------
  const lossChartBox = el("div", { class: "chart", id: "loss-chart", role: "img",
    "aria-label": `Training loss of ${name} by step` });
  const from = el("input", { id: "zoom-from", name: "zoom_from", type: "number", step: "1", inputmode: "numeric" });
  const to = el("input", { id: "zoom-to", name: "zoom_to", type: "number", step: "1", inputmode: "numeric" });
  const compare = el("select", { id: "compare", name: "compare" }, el("option", { value: "" }, "(none)"),
    runs.filter((r) => r.name !== name && r.steps).map((r) => el("option", { value: r.name }, r.name)));
  const compareBox = el("div", { class: "chart", id: "compare-chart", role: "img", hidden: true });
  const charts = [];
  const zoomForm = el("form", { id: "zoom-form", class: "actions", novalidate: true },
    el("div", { class: "field" }, el("label", { for: "zoom-from" }, "From step"), from),
    el("div", { class: "field" }, el("label", { for: "zoom-to" }, "To step"), to),
    el("button", { type: "submit" }, "Zoom"),
    el("button", { type: "button", class: "secondary", onclick: () => charts.forEach(resetZoom) }, "Reset zoom"));
  zoomForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const lo = Number(from.value);
    const hi = Number(to.value);
    if (from.value === "" || to.value === "" || !(lo < hi)) {
      TL.showError(box, "Give a step range: \u201cfrom\u201d below \u201cto\u201d.", "Zoom: ");
      return;
    }
    TL.hideError(box);
    for (const u of charts) u.setScale("x", { min: lo, max: hi });
  });
  const steps = lossSeries(metrics.data);
  parts.push(el("h3", { id: "loss-title" }, "Training loss"),
    steps.x.length ? el("p", { class: "hint", id: "loss-summary" },
      `${steps.x.length} logged steps; loss ${fmt(steps.y[0])} at step ${steps.x[0]}, ` +
      `${fmt(steps.y[steps.y.length - 1])} at step ${steps.x[steps.x.length - 1]}. Drag across the chart to zoom in, ` +
      "double-click it to zoom out.") : missing("metrics.jsonl rows"),
    lossChartBox, steps.x.length ? zoomForm : null,
    el("div", { class: "field", id: "compare-field" }, el("label", { for: "compare" }, "Compare with run"), compare),
    compareBox);

  // --- bits per byte ----------------------------------------------------------------------------------------
  parts.push(el("h3", {}, "Bits per byte (held-out posts)"));
  if (run.eval && run.eval.overall) {
    const per = Object.entries(run.eval.per_source || {}).sort((a, b) => a[1].bpb - b[1].bpb);
    parts.push(el("p", { id: "bpb-overall" }, "Overall: ", el("strong", {}, `${fmt(run.eval.overall.bpb)} bits per byte`),
      run.eval.overall.bpb_se ? ` (\u00b1${fmt(run.eval.overall.bpb_se)})` : ""),
    per.length ? wrap("Bits per byte per source", el("table", { id: "bpb-table" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "source"), el("th", { scope: "col", class: "num" }, "bits/byte"),
        el("th", { scope: "col", class: "num" }, "docs"))),
      el("tbody", {}, per.map(([src, m]) => el("tr", { dataset: { source: src } }, el("th", { scope: "row" }, src),
        el("td", { class: "num" }, fmt(m.bpb)), el("td", { class: "num" }, int(m.docs))))))) : null);
  } else {
    parts.push(missing("evaluation (eval.json)"));
  }

  // --- accounting -----------------------------------------------------------------------------------------
  parts.push(el("h3", {}, "Data accounting"));
  if (run.accounting) {
    const dropped = (d) => (typeof d === "number" ? d : Object.values(d || {}).reduce((a, b) => a + b, 0));
    const rows = Object.entries(run.accounting);
    const total = { in: 0, kept: 0, dropped: 0, quarantined: 0 };
    const trs = rows.map(([src, a]) => {
      const d = dropped(a.dropped);
      const holds = a.in === a.kept + d + a.quarantined;
      for (const [k, v] of [["in", a.in], ["kept", a.kept], ["dropped", d], ["quarantined", a.quarantined]]) total[k] += v;
      const why = typeof a.dropped === "object" ? Object.entries(a.dropped).map(([k, v]) => `${k} ${v}`).join(", ") : "";
      return el("tr", { dataset: { source: src, holds: String(holds) } }, el("th", { scope: "row" }, src),
        el("td", { class: "num" }, int(a.in)), el("td", { class: "num" }, int(a.kept)),
        el("td", { class: "num" }, int(d)), el("td", {}, why || "\u2013"), el("td", { class: "num" }, int(a.quarantined)),
        el("td", { class: holds ? "ok" : "bad" }, holds ? "\u2713 holds" : "\u2717 does not hold"));
    });
    const holds = total.in === total.kept + total.dropped + total.quarantined;
    parts.push(el("p", { class: "hint" }, "Every record read is kept, dropped (with its reason) or quarantined: " +
      "in = kept + dropped + quarantined."),
    wrap("Data accounting per source", el("table", { id: "accounting" },
      el("thead", {}, el("tr", {}, ["source", "in", "kept", "dropped", "dropped because", "quarantined", "in = kept + dropped + quarantined"]
        .map((h, i) => el("th", { scope: "col", class: [1, 2, 3, 5].includes(i) ? "num" : null }, h)))),
      el("tbody", {}, trs),
      el("tfoot", {}, el("tr", {}, el("th", { scope: "row" }, "all sources"), el("td", { class: "num" }, int(total.in)),
        el("td", { class: "num" }, int(total.kept)), el("td", { class: "num" }, int(total.dropped)), el("td", {}),
        el("td", { class: "num" }, int(total.quarantined)),
        el("td", { class: holds ? "ok" : "bad" }, holds ? "\u2713 holds" : "\u2717 does not hold"))))));
  } else {
    parts.push(missing("data accounting (data/accounting.json)"));
  }

  // --- languages --------------------------------------------------------------------------------------------
  parts.push(el("h3", {}, "Languages"));
  if (run.languages && Object.keys(run.languages).length) {
    const langs = Object.entries(run.languages).sort((a, b) => b[1] - a[1]);
    const n = langs.reduce((a, [, v]) => a + v, 0);
    parts.push(wrap("Posts per language", el("table", { id: "languages" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "language"), el("th", { scope: "col", class: "num" }, "posts"),
        el("th", { scope: "col", class: "num" }, "share"))),
      el("tbody", {}, langs.map(([l, v]) => el("tr", { dataset: { lang: l } }, el("th", { scope: "row" }, l),
        el("td", { class: "num" }, int(v)), el("td", { class: "num" }, `${((100 * v) / n).toFixed(1)}%`)))))));
  } else {
    parts.push(missing("language counts"));
  }

  // --- length histogram -----------------------------------------------------------------------------------
  parts.push(el("h3", {}, "Post lengths (characters)"));
  if (run.lengths && run.lengths.counts) {
    const { counts, edges, bin_chars: w } = run.lengths;
    const max = Math.max(1, ...counts);
    const label = (i) => (i === counts.length - 1 ? `${edges[i]}+` : `${edges[i]}\u2013${edges[i] + w - 1}`);
    const total = counts.reduce((a, b) => a + b, 0);
    parts.push(el("div", { class: "bars", id: "length-histogram", role: "img",
      "aria-label": `Histogram of ${total} post lengths in ${counts.length} bins of ${w} characters` },
    counts.map((c, i) => el("div", { class: "bar", style: `height:${((100 * c) / max).toFixed(1)}%`,
      title: `${label(i)} characters: ${c} posts`, dataset: { count: String(c) } }))),
    el("div", { class: "bars-axis", "aria-hidden": "true" }, el("span", {}, "0"), el("span", {}, `${edges[edges.length - 1]}+`)),
    el("details", {}, el("summary", {}, "Counts per bin"), wrap("Post lengths per bin", el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "characters"), el("th", { scope: "col", class: "num" }, "posts"))),
      el("tbody", {}, counts.map((c, i) => el("tr", {}, el("th", { scope: "row" }, label(i)), el("td", { class: "num" }, int(c)))))))));
  } else {
    parts.push(missing("clean corpus (data/train.parquet)"));
  }

  // --- samples and checkpoints ------------------------------------------------------------------------------
  parts.push(el("h3", {}, "Samples"));
  parts.push(run.samples && run.samples.length
    ? el("ol", { id: "samples", class: "posts" }, run.samples.map((s) => el("li", {}, el("pre", {}, s))))
    : missing("samples (samples.json)"));
  parts.push(el("h3", {}, "Checkpoints"));
  parts.push(run.checkpoints && run.checkpoints.length
    ? el("ul", { id: "checkpoints" }, run.checkpoints.map((c) => el("li", { class: "mono" }, c)))
    : missing("checkpoints"));
  TL.put(runSection, parts);

  // --- charts (after the nodes are in the page, so they know their width) ------------------------------------
  if (steps.x.length) charts.push(drawChart(lossChartBox, [{ name, ...steps }]));
  compare.addEventListener("change", async () => {
    const other = compare.value;
    const old = charts.splice(1);
    old.forEach((u) => u.destroy());
    TL.put(compareBox);
    compareBox.hidden = !other;
    if (!other) return;
    compareBox.setAttribute("aria-label", `Training loss of ${name} and ${other} by step`);
    try {
      const m = await TL.api(`/v1/runs/${encodeURIComponent(other)}/metrics`);
      TL.hideError(box);
      charts.push(drawChart(compareBox, [{ name, ...steps }, { name: other, ...lossSeries(m.data) }]));
    } catch (err) {
      compareBox.hidden = true;
      TL.showError(box, err, `Cannot load the metrics of ${other}: `);
    }
  });
});

/** {x: steps, y: losses} of the metrics.jsonl rows that have both. */
function lossSeries(rows) {
  const x = [];
  const y = [];
  for (const r of rows) {
    if (typeof r.step === "number" && typeof r.loss === "number") {
      x.push(r.step);
      y.push(r.loss);
    }
  }
  return { x, y };
}

function resetZoom(u) {
  const xs = u.data[0];
  u.setScale("x", { min: xs[0], max: xs[xs.length - 1] });
}

/** A uPlot line chart of `series` ([{name, x, y}]) in `box`; the box's data-points says how many points each
    series has (data-points: the first), data-zoom-min/max the x range shown. */
function drawChart(box, series) {
  const style = getComputedStyle(document.body);
  const fg = style.color;
  const grid = style.getPropertyValue("--line").trim() || "#d0d7de";
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  const data = series.length === 1
    ? [series[0].x, series[0].y]
    : uPlot.join(series.map((s) => [s.x, s.y]));
  const width = () => Math.max(240, Math.floor(box.clientWidth || box.parentElement.clientWidth || 600));
  const opts = {
    width: width(),
    height: 280,
    scales: { x: { time: false } },
    cursor: { drag: { x: true, y: false } },
    series: [{ label: "step" }, ...series.map((s, i) => ({
      label: s.name, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
    }))],
    axes: [{ ...axis, label: "step" }, { ...axis, label: "loss (nats/token)", size: 60 }],
    hooks: {
      setScale: [(u, key) => {
        if (key !== "x") return;
        box.dataset.zoomMin = String(u.scales.x.min);
        box.dataset.zoomMax = String(u.scales.x.max);
      }],
    },
  };
  const u = new uPlot(opts, data, box);
  box.dataset.points = String(series[0].x.length);
  box.dataset.series = String(series.length);
  box.dataset.counts = JSON.stringify(Object.fromEntries(series.map((s) => [s.name, s.x.length])));
  const ro = new ResizeObserver(() => {
    const w = width();
    if (Math.abs(w - u.width) > 2) u.setSize({ width: w, height: 280 });
  });
  ro.observe(box.parentElement);
  const destroy = u.destroy.bind(u);
  u.destroy = () => {
    ro.disconnect();
    destroy();
  };
  return u;
}
