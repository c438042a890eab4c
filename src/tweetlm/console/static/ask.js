/* Ask page: POST /v1/ask with "stream": true. The search.answer.delta events are shown as they come; the final
   search.answer replaces them with the checked text, whose citations [id] are links that open the cited post. */
"use strict";

TL.page(async (cfg) => {
  const { el } = TL;
  if (!cfg.search) {
    TL.notEnabled("Ask", "--search-index DIR", "Ask answers over the posts of a search index.");
    return;
  }
  const form = document.getElementById("ask-form");
  const box = document.getElementById("error");
  const section = document.getElementById("answer-section");
  const answer = document.getElementById("answer");
  const note = document.getElementById("answer-note");
  const posts = document.getElementById("posts");
  const askButton = document.getElementById("ask-button");
  const stopButton = document.getElementById("stop-button");
  const q = (name) => form.elements.namedItem(name);
  const maxTokens = q("max_tokens");
  maxTokens.max = String(cfg.max_tokens_limit);
  maxTokens.value = String(Math.min(128, cfg.max_tokens_limit));
  const question = new URLSearchParams(location.search).get("question");
  if (question) q("question").value = question;

  function body() {
    const b = { question: q("question").value, k: TL.num(q("k"), 5), mode: q("mode").value,
      max_tokens: TL.num(maxTokens, 128), stream: true };
    for (const name of ["as_of", "since"]) if (q(name).value.trim()) b[name] = q(name).value.trim();
    return b;
  }

  function validate(b) {
    const errs = [];
    if (!b.question.trim()) errs.push(["question", "Type a question."]);
    if (!Number.isInteger(b.k) || b.k < 1 || b.k > 20) errs.push(["k", "A whole number from 1 to 20."]);
    if (!Number.isInteger(b.max_tokens) || b.max_tokens < 1 || b.max_tokens > cfg.max_tokens_limit) {
      errs.push(["max_tokens", `A whole number from 1 to ${cfg.max_tokens_limit} (this server's limit).`]);
    }
    return errs;
  }

  function postNode(p) {
    return el("li", { class: "post", dataset: { id: p.id } },
      el("p", { class: "post-text" }, p.text),
      el("p", { class: "meta" }, el("span", {}, `post ${p.id}`), el("span", {}, "by ", p.author_id || "unknown"),
        TL.timeEl(p.created_at), el("a", { href: TL.postHref(p.id) }, `post ${p.id} JSON`)));
  }

  let controller = null;
  async function run() {
    if (askButton.disabled) return; // one question at a time (Ctrl+Enter while an answer streams)
    TL.hideError(box);
    TL.clearFieldErrors(form);
    const b = body();
    const errs = validate(b);
    for (const [name, msg] of errs) TL.fieldError(form, name, msg);
    if (errs.length) {
      q(errs[0][0]).focus();
      return;
    }
    controller = new AbortController();
    askButton.disabled = true;
    stopButton.disabled = false;
    section.hidden = false;
    TL.closePost();
    TL.put(answer);
    answer.dataset.state = "streaming";
    answer.dataset.deltas = "0";
    answer.setAttribute("aria-busy", "true");
    note.textContent = "Searching and writing\u2026";
    TL.put(posts);
    let deltas = 0;
    let raw = "";
    try {
      for await (const ev of TL.stream("/v1/ask", b, { signal: controller.signal })) {
        if (ev.object === "search.answer.delta") {
          deltas += 1;
          raw += ev.delta;
          answer.textContent = raw;
          answer.dataset.deltas = String(deltas);
        } else if (ev.object === "search.answer") {
          TL.put(answer, TL.citedText(ev.text, ev.cited));
          answer.dataset.state = "done";
          answer.dataset.cited = (ev.cited || []).join(",");
          const removed = ev.removed || [];
          note.textContent = removed.length
            ? `Removed ${removed.length} citation${removed.length === 1 ? "" : "s"} of posts the model was not given: ` +
              `${removed.join(", ")}.`
            : (ev.cited || []).length ? "Every citation is of a post the model was given." : "The answer cites no post.";
          TL.put(posts, (ev.posts || []).map(postNode));
        }
      }
      if (answer.dataset.state !== "done") throw new Error("the answer ended before its checked text arrived");
    } catch (err) {
      if (err.name === "AbortError") {
        answer.dataset.state = "stopped";
        note.textContent = "Stopped: the text above is unchecked (its citations were not verified).";
      } else {
        answer.dataset.state = "error";
        note.textContent = raw ? "The answer broke off: the text above is unchecked (its citations were not verified)." : "";
        if (!raw) section.hidden = true;
        TL.showFormError(form, box, err);
      }
    } finally {
      answer.removeAttribute("aria-busy");
      askButton.disabled = false;
      stopButton.disabled = true;
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    run();
  });
  q("question").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  stopButton.addEventListener("click", () => controller && controller.abort());
});
