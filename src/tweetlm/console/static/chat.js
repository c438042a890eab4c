/* Chat page: POST /v1/chat/completions with the whole conversation each time (stream: true; a grounded answer
   is not streamed, so it is asked with stream: false and shown with its citations). In tweet mode a live
   counter shows the message's weighted length as the server counts it (POST /v1/tweets/weighted_length, called
   when typing pauses), so the page and the server agree by construction. */
"use strict";

TL.page(async (cfg) => {
  const { el } = TL;
  const form = document.getElementById("chat-form");
  const box = document.getElementById("error");
  const transcript = document.getElementById("transcript");
  const message = document.getElementById("message");
  const counter = document.getElementById("tweet-counter");
  const sendButton = document.getElementById("send-button");
  const stopButton = document.getElementById("stop-button");
  const tweetMode = document.getElementById("tweet_mode");
  const grounded = document.getElementById("grounded");
  const q = (name) => form.elements.namedItem(name);
  const maxTokens = q("max_tokens");
  maxTokens.max = String(cfg.max_tokens_limit);
  maxTokens.value = String(Math.min(64, cfg.max_tokens_limit));
  if (cfg.search) {
    document.getElementById("grounded-label").hidden = false;
    grounded.addEventListener("change", () => {
      document.getElementById("search-k-field").hidden = !grounded.checked;
    });
  }

  /** The turns so far, as sent: [{role, content}]; `conversation` counts "New conversation" clicks. */
  const history = [];
  let conversation = 0;

  // --- the weighted-length counter ------------------------------------------------------------------------
  let seq = 0;
  async function count() {
    const text = message.value;
    const mine = ++seq;
    try {
      const r = await TL.api("/v1/tweets/weighted_length", { body: { text } });
      if (mine !== seq || text !== message.value) return; // typed on meanwhile: a newer count follows
      counter.textContent = `${r.weighted_length} / ${r.max_weighted_length} weighted characters`;
      counter.dataset.weightedLength = String(r.weighted_length);
      counter.classList.toggle("over", r.weighted_length > r.max_weighted_length);
      counter.dataset.state = "done";
    } catch (err) {
      if (mine !== seq) return;
      counter.textContent = `weighted length unknown: ${err.message}`;
      counter.dataset.state = "error";
    }
  }
  const countSoon = TL.debounce(count, 250);
  function onInput() {
    if (!tweetMode.checked) return;
    counter.dataset.state = "pending";
    countSoon();
  }
  message.addEventListener("input", onInput);
  tweetMode.addEventListener("change", () => {
    counter.hidden = !tweetMode.checked;
    if (tweetMode.checked) {
      counter.dataset.state = "pending";
      count();
    }
  });

  // --- the conversation ----------------------------------------------------------------------------------
  function turnNode(role, text) {
    const body = el("p", { class: "text" }, text);
    const node = el("div", { class: `turn ${role}`, dataset: { role } },
      el("p", { class: "who" }, role === "user" ? "You" : role === "system" ? "System" : cfg.model), body);
    transcript.append(node);
    return { node, body };
  }

  function settings() {
    return {
      temperature: TL.num(q("temperature"), 0.8),
      top_p: TL.num(q("top_p"), 0.95),
      max_tokens: TL.num(maxTokens, 64),
      tweet_mode: tweetMode.checked,
    };
  }

  function validate(text, s) {
    const errs = [];
    if (!text.trim()) errs.push(["messages", "Type a message."]);
    if (!(s.temperature >= 0 && s.temperature <= 2)) errs.push(["temperature", "A number from 0 to 2."]);
    if (!(s.top_p > 0 && s.top_p <= 1)) errs.push(["top_p", "A number above 0, at most 1."]);
    if (!Number.isInteger(s.max_tokens) || s.max_tokens < 1 || s.max_tokens > cfg.max_tokens_limit) {
      errs.push(["max_tokens", `A whole number from 1 to ${cfg.max_tokens_limit} (this server's limit).`]);
    }
    if (grounded.checked) {
      const k = TL.num(q("search_k"), 5);
      if (!Number.isInteger(k) || k < 1 || k > 20) errs.push(["search_k", "A whole number from 1 to 20."]);
    }
    return errs;
  }

  async function replyLength(text, meta) {
    try {
      const r = await TL.api("/v1/tweets/weighted_length", { body: { text } });
      meta.append(el("span", { class: "reply-length" }, `${r.weighted_length} / ${r.max_weighted_length} weighted`));
    } catch (_) {
      /* the reply stands without its count */
    }
  }

  let controller = null;
  async function send() {
    if (sendButton.disabled) return; // one turn at a time (Ctrl+Enter while a reply streams)
    TL.hideError(box);
    TL.clearFieldErrors(form);
    const text = message.value;
    const s = settings();
    const errs = validate(text, s);
    for (const [name, msg] of errs) TL.fieldError(form, name, msg);
    if (errs.length) {
      q(errs[0][0]).focus();
      return;
    }
    const system = q("system").value.trim();
    const turn = { role: "user", content: text };
    const messages = [...(system ? [{ role: "system", content: system }] : []), ...history, turn];
    const body = { messages, ...s };
    turnNode("user", text);
    message.value = "";
    onInput();
    const reply = turnNode("assistant", "");
    reply.node.setAttribute("aria-busy", "true");
    const meta = el("p", { class: "meta" });
    reply.node.append(meta);
    controller = new AbortController();
    sendButton.disabled = true;
    stopButton.disabled = false;
    let out = "";
    const mine = conversation;
    try {
      if (grounded.checked) {
        body.grounded = true;
        body.stream = false;
        body.search_k = TL.num(q("search_k"), 5);
        reply.body.textContent = "Searching and writing\u2026";
        const res = await TL.api("/v1/chat/completions", { body, signal: controller.signal });
        out = res.choices[0].message.content;
        const cites = res.citations || [];
        TL.put(reply.body, TL.citedText(out, cites.map((c) => c.id)));
        if (res.dropped_turns) meta.append(el("span", {}, `${res.dropped_turns} oldest turns left out to fit`));
        if ((res.removed_citations || []).length) {
          meta.append(el("span", {}, `removed citations of posts not given: ${res.removed_citations.join(", ")}`));
        }
        reply.node.append(el("h3", {}, "Cited posts"), cites.length
          ? el("ul", { class: "citations" }, cites.map((c) => el("li", { dataset: { id: c.id } },
            el("a", { href: TL.postHref(c.id) }, `post ${c.id}`), ": ", c.text)))
          : el("p", { class: "hint" }, "None: the answer cites no post it was given."));
      } else {
        body.stream = true;
        for await (const chunk of TL.stream("/v1/chat/completions", body, { signal: controller.signal })) {
          if (chunk.dropped_turns && !meta.dataset.dropped) {
            meta.dataset.dropped = String(chunk.dropped_turns);
            meta.append(el("span", {}, `${chunk.dropped_turns} oldest turn${chunk.dropped_turns === 1 ? "" : "s"} ` +
              "left out to fit the model's context"));
          }
          const c = chunk.choices && chunk.choices[0];
          if (!c) continue;
          if (c.delta && c.delta.content) {
            out += c.delta.content;
            reply.body.textContent = out;
          }
          if (c.finish_reason) meta.append(el("span", {}, `finished: ${c.finish_reason}`));
        }
      }
      history.push(turn, { role: "assistant", content: out });
      reply.node.dataset.state = "done";
      if (s.tweet_mode) replyLength(out, meta);
    } catch (err) {
      if (err.name === "AbortError") {
        if (mine === conversation) history.push(turn, { role: "assistant", content: out });
        reply.node.dataset.state = "stopped";
        meta.append(el("span", {}, "stopped"));
      } else {
        // the turn did not happen: it leaves the conversation and its text goes back in the box
        reply.node.remove();
        transcript.lastElementChild.remove();
        message.value = text;
        onInput();
        TL.showFormError(form, box, err);
      }
    } finally {
      reply.node.removeAttribute("aria-busy");
      sendButton.disabled = false;
      stopButton.disabled = true;
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    send();
  });
  message.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  stopButton.addEventListener("click", () => controller && controller.abort());
  document.getElementById("clear-button").addEventListener("click", () => {
    if (controller) controller.abort();
    conversation += 1;
    history.length = 0;
    TL.put(transcript);
    message.focus();
  });
});
