/* Ad studio: the brief form, checked here as POST /v1/ads/copy checks it (serve/ads_routes.py, ads/copy.py
   AdBrief.validate) so most mistakes are named before a request; a 400 the server still answers is shown next to
   the field its error.param names. Each variant shows every hard constraint with a pass or fail mark taken from
   that check's `passed` alone (anything but true is a fail), its safety score and weighted length; the rejected
   candidates show the checks they failed. A variant's placement preview (POST /v1/ads/place) lists the chosen
   conversations and, apart, the excluded ones with the reason. */
"use strict";

const MAX_N = 32;
const MAX_CANDIDATES = 256;
const LANG = /^[a-z]{2}(?:[-_][A-Za-z0-9]{2,8})?$/;
const HASHTAG = /^#[\p{L}\p{M}\p{N}_]*[\p{L}\p{M}][\p{L}\p{M}\p{N}_]*$/u;
const TONES = ["positive", "neutral", "negative", ""];

/** data.briefs.contains_phrase: `phrase` in `text` as whole words, case-insensitive, any whitespace between words. */
function containsPhrase(text, phrase) {
  const words = phrase.split(/\s+/).filter(Boolean);
  if (!words.length) return true;
  const esc = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`(?<![\\p{L}\\p{M}\\p{N}_])${esc.join("\\s+")}(?![\\p{L}\\p{M}\\p{N}_])`, "iu").test(text);
}

/** [[field, message]] for each rule of the API the brief breaks (empty: none). Left to the server: the fixed
    text (terms, hashtag, call to action) over 280 weighted characters. */
function briefErrors(b) {
  const errs = [];
  const add = (f, m) => errs.push([f, m]);
  if (!b.product.trim()) add("product", "product: required (the product or brand the ad is for).");
  for (const [f, max] of [["product", 200], ["message", 1000], ["segment", 200], ["hashtag", 100], ["cta", 200],
    ["lang", 8]]) {
    if (b[f].length > max) add(f, `${f}: at most ${max} characters (has ${b[f].length}).`);
  }
  if (b.required_terms.length > 10) add("required_terms", "required_terms: at most 10 terms.");
  if (b.banned_terms.length > 100) add("banned_terms", "banned_terms: at most 100 terms.");
  if (b.lang && !LANG.test(b.lang)) {
    add("lang", `lang: '${b.lang}' is not a language code (ISO 639-1, e.g. en, id, pt-BR).`);
  }
  if (!TONES.includes(b.tone)) add("tone", "tone: positive, neutral, negative or any.");
  if (b.hashtag && !HASHTAG.test(b.hashtag)) add("hashtag", `hashtag: '${b.hashtag}' is not a hashtag (write it as #word).`);
  for (const [f, text] of [["product", b.product], ["hashtag", b.hashtag], ["cta", b.cta]]) {
    const hit = b.banned_terms.find((t) => containsPhrase(text, t));
    if (hit !== undefined && text) add(f, `${f}: '${text}' contains the banned term '${hit}' (banned_terms).`);
  }
  for (const t of b.required_terms) {
    const hit = b.banned_terms.find((x) => containsPhrase(t, x));
    if (hit !== undefined) add("banned_terms", `banned_terms: '${hit}' is banned but the required term '${t}' contains it.`);
  }
  if (!Number.isInteger(b.n) || b.n < 1 || b.n > MAX_N) add("n", `n: a whole number from 1 to ${MAX_N}.`);
  if (!Number.isInteger(b.num_candidates) || b.num_candidates < 1 || b.num_candidates > MAX_CANDIDATES) {
    add("num_candidates", `num_candidates: a whole number from 1 to ${MAX_CANDIDATES}.`);
  } else if (Number.isInteger(b.n) && b.num_candidates < b.n) {
    add("num_candidates", `num_candidates: must be >= n (${b.n}), got ${b.num_candidates}.`);
  }
  if (!Number.isSafeInteger(b.seed)) add("seed", "seed: a whole number.");
  if (!(b.temperature >= 0 && b.temperature <= 2)) add("temperature", "temperature: a number from 0 to 2.");
  return errs;
}

TL.page(async (cfg) => {
  const { el } = TL;
  const ads = cfg.ads || {};
  if (!ads.safety) {
    TL.notEnabled("The ad studio", "--ads-safety DIR",
      "Ad copy also needs a memorization guard (--ads-guard FILE, or the run's own); placement needs --search-index DIR.");
    return;
  }
  const box = document.getElementById("error");
  const briefForm = document.getElementById("brief-form");
  const placeForm = document.getElementById("place-form");
  const copyResults = document.getElementById("copy-results");
  const placeResults = document.getElementById("place-results");
  const copyButton = document.getElementById("copy-button");
  const placeButton = document.getElementById("place-button");
  const f = (form, name) => form.elements.namedItem(name);

  if (!ads.copy) {
    briefForm.replaceWith(el("div", { class: "notice", id: "copy-off", role: "status" },
      el("p", {}, el("strong", {}, "Ad copy is not enabled on this server: "),
        "it has no memorization guard (copy of a training post must be caught)."),
      el("p", {}, "Start it with ", el("code", {}, "tweetlm serve --ads-safety DIR --ads-guard FILE"),
        " (tweetlm ads guard writes one), or from a run that has its memorization_guard.pkl.")));
  }
  if (!ads.place) {
    placeForm.replaceWith(el("div", { class: "notice", id: "place-off", role: "status" },
      el("p", {}, el("strong", {}, "Placement is not enabled on this server: "), "it has no search index."),
      el("p", {}, "Start it with ", el("code", {}, "tweetlm serve --ads-safety DIR --search-index DIR"), ".")));
  }

  function brief() {
    return {
      product: f(briefForm, "product").value,
      message: f(briefForm, "message").value,
      segment: f(briefForm, "segment").value,
      required_terms: TL.list(f(briefForm, "required_terms").value),
      hashtag: f(briefForm, "hashtag").value.trim(),
      cta: f(briefForm, "cta").value.trim(),
      banned_terms: TL.list(f(briefForm, "banned_terms").value),
      lang: f(briefForm, "lang").value.trim(),
      tone: f(briefForm, "tone").value,
      n: TL.num(f(briefForm, "n"), 8),
      num_candidates: TL.num(f(briefForm, "num_candidates"), 64),
      seed: TL.num(f(briefForm, "seed"), 0),
      temperature: TL.num(f(briefForm, "temperature"), 0.7),
      constrained: f(briefForm, "constrained").checked,
    };
  }

  /** One check as a list item: the mark comes from `passed === true` only. */
  function checkNode(c) {
    const ok = c.passed === true;
    return el("li", { class: `check ${ok ? "pass" : "fail"}`, dataset: { name: c.name, passed: String(ok) } },
      el("span", { class: "mark" }, ok ? "\u2713 pass" : "\u2717 fail"),
      el("span", { class: "name" }, c.name), c.detail ? el("span", { class: "detail" }, c.detail) : null);
  }

  function checksNode(checks, label) {
    return el("ul", { class: "checks", "aria-label": label }, checks.map(checkNode));
  }

  const pct = (x) => `${(100 * x).toFixed(0)}%`;
  const counts = (o) => Object.entries(o || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "none";

  function variantNode(v, i) {
    const failing = (v.checks || []).filter((c) => c.passed !== true).length;
    const placeIt = ads.place
      ? el("button", { type: "button", class: "secondary", "aria-label": `Preview placement of variant ${i + 1}`,
        onclick: () => {
          f(placeForm, "ad_text").value = v.text;
          placeForm.requestSubmit();
        } }, "Preview placement")
      : null;
    return el("li", { class: "variant", dataset: { index: String(i) } },
      el("h3", {}, `Variant ${i + 1}`, failing ? ` (${failing} check${failing === 1 ? "" : "s"} failed)` : ""),
      el("p", { class: "post-text" }, v.text),
      el("p", { class: "meta" },
        el("span", { class: "weighted-length" }, `${v.weighted_length} / ${cfg.max_weighted_length} weighted characters`),
        el("span", { class: "safety-score" }, `safety score ${Number(v.safety_score).toFixed(2)} (unsafe at 1.00)`),
        el("span", {}, `relevance ${Number(v.relevance).toFixed(2)}`),
        el("span", {}, `closest training post: 5-gram Jaccard ${Number(v.train_jaccard).toFixed(2)}`),
        v.fixed_up ? el("span", {}, "fixed up: missing terms appended") : el("span", {}, "as written")),
      checksNode(v.checks || [], `Constraints of variant ${i + 1}`),
      placeIt ? el("div", { class: "actions" }, placeIt) : null);
  }

  function rejectedNode(r, i) {
    const fail = (r.checks || []).filter((c) => c.passed !== true);
    const pass = (r.checks || []).filter((c) => c.passed === true);
    return el("li", { class: "variant rejected", dataset: { index: String(i) } },
      el("p", { class: "post-text" }, r.text || "(empty)"),
      el("p", { class: "meta" }, `failed ${fail.length} of ${(r.checks || []).length} checks`),
      checksNode(fail, `Failed checks of rejected candidate ${i + 1}`),
      pass.length ? el("details", {}, el("summary", {}, `${pass.length} passed checks`),
        checksNode(pass, `Passed checks of rejected candidate ${i + 1}`)) : null);
  }

  function showCopy(res) {
    const v = res.variants || [];
    const rej = res.rejected || [];
    TL.put(copyResults,
      el("h2", { id: "variants-title" }, `Variants: ${v.length} of ${res.requested} wanted`),
      el("p", { class: "summary", id: "copy-summary" },
        `${res.candidates} candidates written; ${res.raw_pass} passed every constraint as written ` +
        `(raw pass rate ${pct(res.raw_pass_rate)}), ${res.passed} after fix-up. Why candidates failed: ` +
        `${counts(res.failures)}.`),
      res.note ? el("p", { class: "notice", id: "copy-note" }, res.note) : null,
      v.length ? el("ol", { class: "variants", id: "variants", "aria-labelledby": "variants-title" }, v.map(variantNode))
        : el("p", {}, "No candidate held every constraint: write more candidates, use constrained decoding, or ease the brief."),
      el("h2", { id: "rejected-title" }, `Rejected candidates (${rej.length} shown)`),
      el("p", { class: "hint" }, "Candidates as the model wrote them, before fix-up, that broke a constraint."),
      rej.length ? el("ol", { class: "variants", id: "rejected", "aria-labelledby": "rejected-title" }, rej.map(rejectedNode))
        : el("p", {}, "None."));
  }

  async function writeCopy() {
    TL.hideError(box);
    TL.clearFieldErrors(briefForm);
    const b = brief();
    const errs = briefErrors(b);
    for (const [name, msg] of errs) TL.fieldError(briefForm, name, msg);
    if (errs.length) {
      TL.showError(box, `${errs.length} field${errs.length === 1 ? "" : "s"} of the brief to fix (marked below).`,
        "Check the brief: ");
      f(briefForm, errs[0][0]).focus();
      return;
    }
    copyButton.disabled = true;
    copyResults.setAttribute("aria-busy", "true");
    TL.put(copyResults, el("p", { class: "busy" }, `Writing ${b.num_candidates} candidates\u2026`));
    try {
      showCopy(await TL.api("/v1/ads/copy", { body: b }));
    } catch (err) {
      TL.put(copyResults);
      TL.showFormError(briefForm, box, err);
    } finally {
      copyResults.removeAttribute("aria-busy");
      copyButton.disabled = false;
    }
  }

  function reasonText(h) {
    if (h.reason === "unsafe") {
      return `unsafe: safety score ${Number(h.safety_score).toFixed(2)}` +
        ((h.flagged_by || []).length ? `, flagged by ${h.flagged_by.join(", ")}` : "");
    }
    if (String(h.reason).startsWith("banned_term:")) return `banned term \u201c${h.reason.slice(12)}\u201d`;
    return String(h.reason);
  }

  function contextNode(h, excluded) {
    return el("li", { class: "post", dataset: { id: h.id, reason: excluded ? h.reason : null } },
      el("p", { class: "post-text" }, h.text),
      el("p", { class: "meta" },
        excluded ? el("strong", { class: "reason" }, reasonText(h)) : el("span", {}, `rank ${h.rank}`),
        el("span", {}, "by ", h.author_id || "unknown"), TL.timeEl(h.created_at),
        el("span", {}, `language ${h.lang || "unknown"}`),
        excluded ? null : el("span", {}, `safety score ${Number(h.safety_score).toFixed(2)}`),
        el("a", { href: TL.postHref(h.id) }, `post ${h.id} JSON`)));
  }

  async function preview() {
    TL.hideError(box);
    TL.clearFieldErrors(placeForm);
    const k = TL.num(f(placeForm, "k"), 5);
    const body = {
      ad_text: f(placeForm, "ad_text").value,
      k,
      num_candidates: Math.max(50, Number.isInteger(k) ? k : 0),
      banned_terms: ads.copy ? TL.list(f(briefForm, "banned_terms").value) : [],
      lang: TL.list(f(placeForm, "lang").value),
    };
    if (f(placeForm, "as_of").value.trim()) body.as_of = f(placeForm, "as_of").value.trim();
    const errs = [];
    if (!body.ad_text.trim()) errs.push(["ad_text", "ad_text: write the ad, or pick a variant above."]);
    if (!Number.isInteger(k) || k < 1 || k > 100) errs.push(["k", "k: a whole number from 1 to 100."]);
    for (const [name, msg] of errs) TL.fieldError(placeForm, name, msg);
    if (errs.length) {
      f(placeForm, errs[0][0]).focus();
      return;
    }
    placeButton.disabled = true;
    placeResults.setAttribute("aria-busy", "true");
    TL.put(placeResults, el("p", { class: "busy" }, "Finding conversations\u2026"));
    try {
      const res = await TL.api("/v1/ads/place", { body });
      const ex = res.excluded || [];
      TL.put(placeResults,
        el("p", { class: "summary", id: "place-summary" },
          `For \u201c${res.query}\u201d: ${res.candidates} conversations retrieved, ${res.placements.length} placements, ` +
          `${ex.length} excluded.`),
        el("h3", { id: "placements-title" }, "Placements"),
        res.placements.length
          ? el("ol", { class: "posts", id: "placements", "aria-labelledby": "placements-title" },
            res.placements.map((h) => contextNode(h, false)))
          : el("p", {}, "None: no retrieved conversation is safe and free of banned terms."),
        el("h3", { id: "excluded-title" }, `Excluded (${ex.length})`),
        ex.length ? el("ul", { class: "posts", id: "excluded", "aria-labelledby": "excluded-title" },
          ex.map((h) => contextNode(h, true))) : el("p", {}, "None."));
      placeResults.scrollIntoView({ block: "nearest" });
    } catch (err) {
      TL.put(placeResults);
      TL.showFormError(placeForm, box, err);
    } finally {
      placeResults.removeAttribute("aria-busy");
      placeButton.disabled = false;
    }
  }

  briefForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    writeCopy();
  });
  placeForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    preview();
  });
});
