/* tweetlm console: what every page shares (layer L5, serve; static files served at /console/).

   - the navigation bar and the model name;
   - api(): a JSON call to the public HTTP API whose failure is an ApiError carrying the server's own words
     ({"error": {"message", "type", "param", "code"}}), the status and Retry-After;
   - stream(): server-sent events read with fetch + ReadableStream (POST bodies; EventSource only GETs);
   - el(): DOM nodes built from text, so post text never goes through innerHTML;
   - error display: in words inside the page, next to the field the server named (error.param) when there is one;
   - citations: "[111, 222]" in an answer turned into links that open the cited post in a panel.

   Authentication is the browser's: the server asks for its key once per session (HTTP Basic, the key as the
   password) and the browser sends it with every same-origin request, these fetch() calls included. Nothing here
   reads or stores the key. */
"use strict";

const TL = (() => {
  const PAGES = [
    ["index.html", "Overview"],
    ["search.html", "Search"],
    ["ask.html", "Ask"],
    ["chat.html", "Chat"],
    ["ads.html", "Ad studio"],
    ["runs.html", "Runs"],
  ];

  /** An element: el("p", {class: "x", text: "hi"}, child, "more text"). Strings become text nodes. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else if (v === true) node.setAttribute(k, "");
      else node.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /** Replace the children of `node` with `kids` (null, undefined and false left out: replaceChildren would write
      them as text). */
  function put(node, ...kids) {
    node.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
    return node;
  }

  class ApiError extends Error {
    constructor(status, message, { param = null, code = null, type = null, retryAfter = null } = {}) {
      super(message);
      this.name = "ApiError";
      this.status = status;
      this.param = param;
      this.code = code;
      this.type = type;
      this.retryAfter = retryAfter;
    }
  }

  /** The ApiError of a failed response, in words a person can act on. */
  async function errorOf(resp) {
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    const e = (body && body.error) || {};
    const retryAfter = resp.headers.get("Retry-After");
    let message = e.message || `${resp.status} ${resp.statusText || "error"}`;
    if (resp.status === 401) {
      message = `The server did not accept the API key (401: ${message}). Reload the page and enter the key as ` +
        "the password when the browser asks (any user name).";
    } else if (resp.status === 503) {
      message = `The server is busy (503: ${message}).` + (retryAfter ? ` Try again in ${retryAfter} s.` : "");
    } else if (resp.status === 413) {
      message = `The request is too large (413: ${message}).`;
    } else if (resp.status >= 500) {
      message = `The server failed (${resp.status}: ${message}).`;
    }
    return new ApiError(resp.status, message, { param: e.param, code: e.code, type: e.type, retryAfter });
  }

  function networkError(err) {
    return new ApiError(0, `Cannot reach the tweetlm server (${err.message}). Is it still running?`);
  }

  function request(path, { method, body, signal } = {}) {
    const init = { method: method || (body === undefined ? "GET" : "POST"), signal };
    if (body !== undefined) {
      init.headers = { "Content-Type": "application/json" };
      init.body = JSON.stringify(body);
    }
    return fetch(path, init);
  }

  /** JSON of `path` (GET, or POST when `body` is given); throws ApiError (or AbortError). */
  async function api(path, opts = {}) {
    let resp;
    try {
      resp = await request(path, opts);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw networkError(err);
    }
    if (!resp.ok) throw await errorOf(resp);
    return resp.json();
  }

  /** The parsed JSON events of a server-sent event stream (POST `body` to `path`), until "[DONE]". An error
      event ({"error": ...}) in the stream throws ApiError. */
  async function* stream(path, body, { signal } = {}) {
    let resp;
    try {
      resp = await request(path, { body, signal });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw networkError(err);
    }
    if (!resp.ok) throw await errorOf(resp);
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        buf += decoder.decode(value || new Uint8Array(), { stream: !done });
        buf = buf.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart());
          if (!data.length) continue;
          const text = data.join("\n");
          if (text === "[DONE]") return;
          const event = JSON.parse(text);
          if (event.error) {
            const e = event.error;
            throw new ApiError(200, `The server stopped with an error: ${e.message}`, { code: e.code, type: e.type });
          }
          yield event;
        }
        if (done) {
          if (buf.trim()) throw new ApiError(200, "The stream ended in the middle of an event.");
          throw new ApiError(200, "The stream ended before the server said it was done (connection lost?).");
        }
      }
    } finally {
      reader.cancel().catch(() => {}); // leaving early (an error, a stop) closes the connection
    }
  }

  let configPromise = null;
  /** GET /v1/console/config, once per page. */
  function config() {
    if (!configPromise) configPromise = api("/v1/console/config");
    return configPromise;
  }

  function renderNav(cfg) {
    const header = document.getElementById("top");
    if (!header) return;
    header.className = "top";
    const here = location.pathname.split("/").pop() || "index.html";
    const items = PAGES.map(([href, name]) =>
      el("li", {}, el("a", { href, "aria-current": href === here ? "page" : null }, name)));
    const model = cfg ? el("span", { class: "model", id: "model-name" }, `model: ${cfg.model}`) : null;
    header.replaceChildren(el("nav", { "aria-label": "Console pages" },
      el("a", { class: "brand", href: "index.html" }, "tweetlm console"), el("ul", {}, items), model));
  }

  /** Show `err` (ApiError or any Error) in the element `box` (role=alert), in words. */
  function showError(box, err, prefix) {
    if (!box) return;
    const msg = err instanceof Error ? err.message : String(err);
    box.replaceChildren(el("strong", {}, prefix || "Error: "), msg);
    box.hidden = false;
  }

  function hideError(box) {
    if (!box) return;
    box.hidden = true;
    box.replaceChildren();
  }

  /** Remove every field error of `form`. */
  function clearFieldErrors(form) {
    for (const p of form.querySelectorAll(".field-error")) p.remove();
    for (const c of form.querySelectorAll("[aria-invalid]")) {
      c.removeAttribute("aria-invalid");
      const ids = (c.getAttribute("aria-describedby") || "").split(" ").filter((i) => i && !i.endsWith("-error"));
      if (ids.length) c.setAttribute("aria-describedby", ids.join(" "));
      else c.removeAttribute("aria-describedby");
    }
  }

  /** The control of `form` a server's error.param names ("required_terms.0" -> required_terms;
      "required_terms/hashtag/cta" -> required_terms), or null. */
  function controlFor(form, param) {
    if (!param) return null;
    for (const name of String(param).split(/[/.]/)) {
      const c = form.querySelector(`[name="${CSS.escape(name)}"]`);
      if (c) return c;
    }
    return null;
  }

  /** Show `message` under the control of `form` named by `param`; false when the form has no such control. */
  function fieldError(form, param, message) {
    const control = controlFor(form, param);
    if (!control) return false;
    const id = `${control.id || control.name}-error`;
    if (document.getElementById(id)) document.getElementById(id).remove();
    const p = el("p", { class: "field-error", id }, message);
    (control.closest(".field") || control).after(p);
    control.setAttribute("aria-invalid", "true");
    const ids = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    control.setAttribute("aria-describedby", [...ids, id].join(" "));
    return true;
  }

  /** A server error on a form: next to its field when error.param names one, else in `box`. */
  function showFormError(form, box, err) {
    if (err instanceof ApiError && err.status === 400) {
      // the field the server named, or the one its message starts with ("since: 'x' is not an ISO 8601 date")
      const lead = /^(?:invalid request: )?([A-Za-z_]+):/.exec(err.message);
      const param = err.param || (lead && lead[1]);
      if (fieldError(form, param, err.message)) {
        showError(box, err.message, "The server refused the request: ");
        controlFor(form, param).focus();
        return;
      }
    }
    showError(box, err);
  }

  /** Replace the page's content with a notice that `what` is off and the flag that turns it on. */
  function notEnabled(what, flag, extra) {
    const main = document.getElementById("main");
    const h1 = main.querySelector("h1");
    put(main, h1 || el("h1", {}, what),
      el("div", { class: "notice", id: "not-enabled", role: "status" },
        el("p", {}, el("strong", {}, `${what} is not enabled on this server.`)),
        el("p", {}, "Start the server with ", el("code", {}, `tweetlm serve ${flag}`), " to turn it on."),
        extra ? el("p", {}, extra) : null));
  }

  /** Run a page: nav, config, then `start(cfg)`; any failure ends as a message in the page. */
  async function page(start) {
    renderNav(null);
    const box = document.getElementById("error");
    let cfg;
    try {
      cfg = await config();
    } catch (err) {
      showError(box, err, "Cannot load the server's configuration: ");
      return;
    }
    renderNav(cfg);
    try {
      await start(cfg);
    } catch (err) {
      showError(box, err);
    }
  }

  function debounce(fn, ms) {
    let t = null;
    return (...args) => {
      clearTimeout(t);
      t = setTimeout(() => fn(...args), ms);
    };
  }

  /** "2015-02-01T00:00:00Z" -> a <time> element reading "2015-02-01 00:00 UTC" (or "undated"). */
  function timeEl(iso) {
    if (!iso) return el("span", {}, "undated");
    const d = new Date(iso);
    const text = isNaN(d) ? iso : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
    return el("time", { datetime: iso }, text);
  }

  /** Comma-separated text -> trimmed non-empty items. */
  function list(text) {
    return String(text || "").split(",").map((s) => s.trim()).filter(Boolean);
  }

  function postHref(id) {
    return `/v1/posts/${encodeURIComponent(id)}`;
  }

  const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}\p{Script=Thai}]/u;
  const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

  /** `text` as text nodes with <mark> around the search's matched terms (analyze.tokenize terms: lowercased
      words, @mentions, #hashtags, $cashtags, url:<host>, single CJK characters and their bigrams). */
  function highlight(text, terms) {
    const pats = [];
    for (let t of [...new Set(terms || [])].sort((a, b) => b.length - a.length)) {
      if (t.startsWith("url:")) t = t.slice(4);
      if (!t) continue;
      const core = escapeRe(t);
      pats.push(CJK.test(t) ? core : `(?<![\\p{L}\\p{M}\\p{N}_])${core}(?![\\p{L}\\p{M}\\p{N}_])`);
    }
    if (!pats.length) return [document.createTextNode(text)];
    const re = new RegExp(pats.join("|"), "giu");
    const out = [];
    let last = 0;
    for (const m of text.matchAll(re)) {
      if (!m[0]) continue;
      if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
      out.push(el("mark", {}, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(document.createTextNode(text.slice(last)));
    return out;
  }

  // --- the post panel (citations open their post here) -------------------------------------------------------

  let panel = null;
  /** The post panel, placed right after the paragraph or chat turn holding `opener`. */
  function postPanel(opener) {
    if (!panel) {
      panel = el("aside", { class: "panel", id: "post-panel", tabindex: "-1", "aria-labelledby": "post-panel-title",
        hidden: true });
    }
    const near = opener && opener.closest(".turn, p, li");
    if (near) near.after(panel);
    else document.getElementById("main").append(panel);
    return panel;
  }

  /** Open post `id` (GET /v1/posts/{id}) in the panel and move the focus there. */
  async function openPost(id, opener) {
    const p = postPanel(opener);
    p.dataset.postId = id;
    p.dataset.state = "loading";
    p.hidden = false;
    const close = el("button", { type: "button", class: "secondary", onclick: () => {
      p.hidden = true;
      if (opener) opener.focus();
    } }, "Close post");
    p.replaceChildren(el("h2", { id: "post-panel-title" }, `Post ${id}`), el("p", { class: "busy" }, "Loading\u2026"));
    p.focus({ preventScroll: true });
    p.scrollIntoView({ block: "nearest" });
    try {
      const post = await api(postHref(id));
      put(p, el("h2", { id: "post-panel-title" }, `Post ${id}`),
        el("p", { class: "post-text" }, post.text),
        el("p", { class: "meta" }, timeEl(post.created_at),
          post.author_id ? `by ${post.author_id}` : null, post.lang ? `language ${post.lang}` : null,
          post.kind || null, post.segment ? `segment ${post.segment}` : null,
          el("a", { href: postHref(id) }, "post JSON")),
        el("div", { class: "actions" }, close));
      p.dataset.state = "done";
    } catch (err) {
      p.replaceChildren(el("h2", { id: "post-panel-title" }, `Post ${id}`),
        el("p", { class: "error", role: "alert" }, err.message), el("div", { class: "actions" }, close));
      p.dataset.state = "error";
    }
  }

  /** Hide the post panel (a new answer replaces the one it was opened from). */
  function closePost() {
    if (panel) panel.hidden = true;
  }

  /** `text` as nodes with each cited id inside [..] a link to its post (a click opens the panel; the link
      itself is the post's JSON). Ids not in `cited` stay plain text. */
  function citedText(text, cited) {
    const ok = new Set(cited || []);
    const out = [];
    let last = 0;
    for (const m of text.matchAll(/\[([^\[\]\n]{1,200})\]/g)) {
      const parts = m[1].split(/([,;]\s*)/);
      if (!parts.some((s) => ok.has(s.trim()))) continue;
      if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
      out.push(document.createTextNode("["));
      for (const s of parts) {
        const id = s.trim();
        if (ok.has(id)) {
          const a = el("a", { href: postHref(id), class: "cite", dataset: { postId: id },
            "aria-label": `cited post ${id}` }, id);
          a.addEventListener("click", (ev) => {
            if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return; // new tab: the JSON
            ev.preventDefault();
            openPost(id, a);
          });
          out.push(a);
        } else {
          out.push(document.createTextNode(s));
        }
      }
      out.push(document.createTextNode("]"));
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(document.createTextNode(text.slice(last)));
    return out;
  }

  /** A number input's value as a number, or `fallback` when empty. */
  function num(input, fallback) {
    const v = input.value.trim();
    return v === "" ? fallback : Number(v);
  }

  return {
    ApiError, api, stream, config, el, put, page, showError, hideError, clearFieldErrors, fieldError, showFormError,
    notEnabled, debounce, timeEl, list, postHref, highlight, openPost, closePost, citedText, num,
  };
})();
