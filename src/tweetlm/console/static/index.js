/* Overview: what this server serves (GET /v1/console/config), a card per page, and how to turn a part on. */
"use strict";

TL.page(async (cfg) => {
  const { el } = TL;
  const ads = cfg.ads || {};
  const cards = [
    {
      id: "search", href: "search.html", title: "Search", on: cfg.search, flag: "--search-index DIR",
      text: "Find posts by words and meaning (BM25 + dense), within a time range, language and kind.",
    },
    {
      id: "ask", href: "ask.html", title: "Ask", on: cfg.search, flag: "--search-index DIR",
      text: "A question answered by the model over the posts found for it, every citation checked.",
    },
    {
      id: "chat", href: "chat.html", title: "Chat", on: true, flag: "",
      text: "A conversation with the served model: sampling settings, tweet mode with a live weighted-length " +
        "counter" + (cfg.search ? ", answers grounded in the search index." : "."),
    },
    {
      id: "ads", href: "ads.html", title: "Ad studio", on: ads.safety, flag: "--ads-safety DIR",
      text: "Ad copy from a brief with every constraint checked, and a placement preview beside conversations. " +
        `Copy: ${ads.copy ? "on" : "off"}; placement: ${ads.place ? "on" : "off (needs --search-index too)"}.`,
    },
    {
      id: "runs", href: "runs.html", title: "Runs", on: cfg.runs, flag: "--runs-dir DIR",
      text: "Training runs: data accounting, languages, lengths, loss curves, bits per byte, samples.",
    },
  ];
  const list = document.getElementById("features");
  for (const c of cards) {
    list.append(el("li", { class: "card", id: `feature-${c.id}`, dataset: { enabled: String(Boolean(c.on)) } },
      el("h3", {}, el("a", { href: c.href }, c.title), " ",
        el("span", { class: `badge ${c.on ? "on" : "off"}` }, c.on ? "on" : "off")),
      el("p", {}, c.text),
      c.on ? null : el("p", { class: "hint" }, "Turn it on with ", el("code", {}, `tweetlm serve ${c.flag}`), ".")));
  }
  document.getElementById("loading").replaceWith(
    el("dl", { class: "facts", id: "server-facts" },
      el("dt", {}, "Model"), el("dd", {}, cfg.model),
      el("dt", {}, "API key"), el("dd", {}, cfg.auth ? "required (you gave it)" : "none configured: open to anyone"),
      el("dt", {}, "Longest reply"), el("dd", {}, `${cfg.max_tokens_limit} tokens`),
      el("dt", {}, "Post length"), el("dd", {}, `${cfg.max_weighted_length} weighted characters (twitter-text v3)`)));
});
