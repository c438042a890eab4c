"""Ad copy (layer L4, ads): an advertiser's brief -> ranked, diverse post variants that break no rule.

``generate_copy`` renders the brief as a chat instruction (``AdBrief.instruction``: the brief instruction the
fine-tuning set teaches, ``data.briefs.Brief.instruction``, plus the call to action), samples ``num_candidates``
replies with the inference engine in tweet mode (one seed each; the reply alone is held to 280 weighted
characters) and then:

1. records which candidates pass every hard constraint as sampled (the **raw pass rate**);
2. fix-up (``fixup=True``): a candidate missing required terms, the hashtag or the call to action gets them
   appended, in that order, after its text is cut back at a word boundary so the result still fits 280
   weighted characters; a candidate with a banned term is never fixed, only dropped;
3. filters on the hard constraints, all of which hold for every returned variant: at most 280 weighted
   characters (twitter-text v3, ``data.twitter_text``), no U+FFFD or control character other than newline
   (``malformed_text``), every required term and the hashtag present
   (case-insensitive, whole words), the call to action present, no banned term, brand-safe by the safety
   classifier, and not a near-copy of a training post (``ads.guard``);
4. ranks by relevance to the brief (cosine of sentence embeddings of the variant and ``product. message``
   when an ``embed`` function is given, else word-set Jaccard) and diversifies with maximal marginal relevance
   (MMR, Carbonell and Goldstein 1998): each pick maximises ``lam * relevance - (1 - lam) * max similarity to
   the picks so far``.

Fewer than ``n`` variants come back when fewer pass; the result says so and counts why candidates failed.
``constrained=True`` samples with lexically constrained decoding instead (the engine forces the required terms,
hashtag and call to action into the text while it writes, ``SamplingParams.required``); the fix-up of step 2
then only has to act where the decoder could not fit a phrase.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from tweetlm.data.briefs import TONES, Brief, contains_phrase, is_hashtag
from tweetlm.data.twitter_text import weighted_length

MAX_WEIGHTED = 280
MAX_N = 32
MAX_CANDIDATES = 256
DEFAULT_TEMPERATURE = 0.7
"""Sampling temperature of ad candidates (CLI, server, ``generate_copy``). Over 60 held-out airline briefs x 8
candidates of a brief-tuned SmolLM2-135M (``sft_handles``), 0.7 against 0.9: raw pass rate 31.7% vs 26.7%,
fluency 1.84 vs 2.03 bits per byte, fewer fix-ups (58% vs 63% of variants), less variety (distinct-2 0.59 vs
0.74), which MMR ranking spreads out (``benchmarks/results/ads_sft_cpu2_202612.md``)."""
_LANG = re.compile(r"[a-z]{2}(?:[-_][A-Za-z0-9]{2,8})?")


@dataclass
class AdBrief:
    """What an advertiser asks for.

    Attributes:
        product: the product or brand (the prompt's brand field; a required term unless ``product_required``
            is false).
        message: what the ad should say; used for ranking (relevance), not copied into the text.
        segment: the audience segment id or label the ad is for (reported back; ``tweetlm ads segments``).
        required_terms: words or phrases every variant contains.
        hashtag: a hashtag every variant contains (``#word``), or ``""``.
        cta: a call to action every variant contains verbatim (e.g. ``Book at example.com``), or ``""``.
        banned_terms: words or phrases no variant contains.
        lang: ISO 639-1 language code of the copy.
        tone: one of ``TONES`` or ``""``.
        product_required: whether ``product`` counts as a required term.
    """

    product: str
    message: str = ""
    segment: str = ""
    required_terms: list[str] = field(default_factory=list)
    hashtag: str = ""
    cta: str = ""
    banned_terms: list[str] = field(default_factory=list)
    lang: str = "en"
    tone: str = "positive"
    product_required: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> AdBrief:
        """An ``AdBrief`` from JSON-like ``d``; ``ValueError`` naming the field for an unknown or bad field."""
        if not isinstance(d, dict):
            raise ValueError("a brief is a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown brief field(s) {unknown}; known: {sorted(known)}")
        if "product" not in d:
            raise ValueError("brief: product is required")
        b = cls(**d)
        b.validate()
        return b

    def validate(self) -> None:
        """``ValueError`` naming the field: empty product, a non-string term, a hashtag not of the form
        ``#word``, a ``lang`` that is not an ISO 639-1 code (optionally with a region), a tone outside
        ``TONES``, a banned term inside a required term, the product, the hashtag or the CTA (every variant
        carries them, so none could pass), or fixed text (terms, hashtag, CTA) that alone exceeds 280 weighted
        characters."""
        if not isinstance(self.product, str) or not self.product.strip():
            raise ValueError("product: must be a non-empty string")
        for name in ("message", "segment", "hashtag", "cta", "lang", "tone"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name}: must be a string")
        for name in ("required_terms", "banned_terms"):
            v = getattr(self, name)
            if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
                raise ValueError(f"{name}: must be a list of non-empty strings")
        if self.lang and not _LANG.fullmatch(self.lang):
            raise ValueError(f"lang: {self.lang!r} is not a language code (ISO 639-1, e.g. en, id, pt-BR)")
        if self.tone and self.tone not in TONES:
            raise ValueError(f"tone: must be one of {', '.join(TONES)} or empty, got {self.tone!r}")
        if self.hashtag and not is_hashtag(self.hashtag):
            raise ValueError(f"hashtag: {self.hashtag!r} is not a hashtag (write it as #word)")
        for name, text in (("product", self.product), ("hashtag", self.hashtag), ("cta", self.cta)):
            hit = next((b for b in self.banned_terms if contains_phrase(text, b)), None)
            if hit is not None:
                raise ValueError(f"{name}: {text!r} contains the banned term {hit!r} (banned_terms)")
        for t in self.required_terms:
            hit = next((b for b in self.banned_terms if contains_phrase(t, b)), None)
            if hit is not None:
                raise ValueError(f"banned_terms: {hit!r} is banned but the required term {t!r} contains it")
        fixed = " ".join([*self.required(), self.hashtag, self.cta]).strip()
        if weighted_length(fixed) > MAX_WEIGHTED:
            raise ValueError(f"required_terms/hashtag/cta: together {weighted_length(fixed)} weighted characters")

    def required(self) -> list[str]:
        """Required terms, the product first when it is required (duplicates removed, case-insensitive)."""
        out: list[str] = []
        for t in ([self.product] if self.product_required else []) + list(self.required_terms):
            t = " ".join(t.split())
            if t and t.casefold() not in {x.casefold() for x in out}:
                out.append(t)
        return out

    def control(self) -> Brief:
        """The fine-tuning brief this ad brief is rendered as."""
        return Brief(
            lang=self.lang,
            tone=self.tone,
            brand=self.product,
            terms=self.required(),
            hashtags=[self.hashtag] if self.hashtag else [],
            ending=self.cta,
        )

    def instruction(self) -> str:
        """The brief as the chat instruction the model answers: ``Brief.instruction`` of ``control()`` (the call
        to action as its ``End with "<cta>".``, the closing-phrase instruction the fine-tuning briefs teach)."""
        return self.control().instruction()

    def constraints(self) -> list[str]:
        """Every phrase a variant must contain: required terms, the hashtag, the call to action."""
        return [*self.required(), *([self.hashtag] if self.hashtag else []), *([self.cta] if self.cta else [])]

    def query(self) -> str:
        """Text that stands for the brief in ranking: ``product. message``."""
        return ". ".join(x for x in (self.product, self.message) if x)


_MALFORMED = re.compile(r"[\ufffd\x00-\x09\x0b-\x1f\x7f-\x9f]")
"""U+FFFD (an undecodable byte fragment) or a C0/C1 control character other than newline (or DEL)."""


def is_malformed(text: str) -> bool:
    """``text`` holds U+FFFD or a C0/C1 control character other than newline."""
    return _MALFORMED.search(text) is not None


def _text_checks(text: str, brief: AdBrief) -> list[tuple[str, str, bool, str]]:
    """Every text constraint of ``brief`` on ``text``, in ``violations`` order: ``(check name, violation name,
    passed, detail)``. The one definition behind ``violations`` and ``constraint_checks``."""
    w = weighted_length(text)
    bad = is_malformed(text)
    out = [
        ("not_empty", "empty", bool(text.strip()), ""),
        ("well_formed", "malformed_text", not bad, "holds U+FFFD or a control character" if bad else ""),
        ("length", "length", w <= MAX_WEIGHTED, f"{w} of {MAX_WEIGHTED} weighted characters"),
    ]
    for t in brief.required():
        ok = contains_phrase(text, t)
        out.append((f"required_term:{t}", f"required_term:{t}", ok, "present" if ok else "missing"))
    if brief.hashtag:
        ok = contains_phrase(text, brief.hashtag)
        out.append(("hashtag", "hashtag", ok, brief.hashtag + (" present" if ok else " missing")))
    if brief.cta:
        ok = brief.cta.casefold() in text.casefold()
        out.append(("cta", "cta", ok, brief.cta + (" present" if ok else " missing")))
    for t in brief.banned_terms:
        present = contains_phrase(text, t)
        out.append((f"banned_term:{t}", f"banned_term:{t}", not present, "present" if present else "absent"))
    return out


def violations(text: str, brief: AdBrief) -> list[str]:
    """The brief's text constraints that ``text`` breaks (empty: none): ``length``, ``empty``,
    ``malformed_text`` (U+FFFD or a control character other than newline), ``required_term:<t>``, ``hashtag``,
    ``cta``, ``banned_term:<t>``. Safety and memorization are checked by their own components."""
    return [v for _, v, ok, _ in _text_checks(text, brief) if not ok]


def fix_up(text: str, brief: AdBrief) -> str:
    """``text`` with the missing required terms, hashtag and CTA appended (in that order), the body cut back
    at a word boundary (then character by character) so the whole is at most 280 weighted characters."""
    tail = [t for t in brief.required() if not contains_phrase(text, t)]
    if brief.hashtag and not contains_phrase(text, brief.hashtag):
        tail.append(brief.hashtag)
    if brief.cta and brief.cta.casefold() not in text.casefold():
        tail.append(brief.cta)
    if not tail:
        return text
    suffix = " ".join(tail)
    body = " ".join(text.split())
    while body and weighted_length(f"{body} {suffix}") > MAX_WEIGHTED:
        cut = body.rfind(" ")
        body = body[:cut] if cut > 0 else body[:-1]
    return f"{body} {suffix}".strip()


def constraint_checks(text: str, brief: AdBrief, safety_result, guard_hit) -> list[dict]:
    """Every hard constraint of ``brief`` on ``text``, passed or not, as ``{"name", "passed", "detail"}``:
    ``not_empty``, ``well_formed`` (no U+FFFD or control character), ``length`` (at most 280 weighted
    characters), one ``required_term:<t>`` per required term, ``hashtag``, ``cta``, one ``banned_term:<t>`` per
    banned term (passed: absent) -- the checks of ``violations`` -- then ``safety`` (``safety_result.score`` < 1)
    and ``not_a_copy`` (the memorization guard's ``guard_hit``)."""
    out = [{"name": n, "passed": ok, "detail": d} for n, _, ok, d in _text_checks(text, brief)]
    out.append({"name": "safety", "passed": not safety_result.unsafe,
                "detail": f"score {safety_result.score:.2f} (unsafe at 1.00 or more)"})  # fmt: skip
    out.append({"name": "not_a_copy", "passed": not guard_hit.copy,
                "detail": f"5-gram Jaccard {guard_hit.jaccard:.2f} with the closest training post"})  # fmt: skip
    return out


@dataclass
class Variant:
    """One returned ad: ``text``, its ``weighted_length``, ``fixed_up`` (terms were appended), ``relevance`` to
    the brief, ``safety_score`` (largest probability / threshold of the safety heads; < 1 is safe),
    ``train_jaccard`` (5-gram Jaccard with the closest training post the guard found) and ``checks``
    (``constraint_checks``: every hard constraint with its result)."""

    text: str
    weighted_length: int
    fixed_up: bool
    relevance: float
    safety_score: float
    train_jaccard: float
    checks: list[dict] = field(default_factory=list)


@dataclass
class CopyResult:
    """``variants`` (best first), ``requested``, ``candidates`` sampled, ``raw_pass`` (candidates passing every
    hard constraint as sampled), ``raw_pass_rate``, ``passed`` (after fix-up and filtering, before dedup and
    MMR), ``failures`` (why candidates were dropped, counted once per candidate and reason), ``raw_failures``
    (the same count over the candidates as sampled, before fix-up, plus one key per missing required term or
    present banned term, e.g. ``required_term:Delta``), ``rejected`` (up to ``MAX_REJECTED`` candidates as
    sampled that broke a constraint: ``{"text", "checks"}``, for showing why) and ``note`` (set when fewer
    than ``requested`` came back)."""

    variants: list[Variant]
    requested: int
    candidates: int
    raw_pass: int
    raw_pass_rate: float
    passed: int
    failures: dict[str, int]
    raw_failures: dict[str, int] = field(default_factory=dict)
    segment: str = ""
    note: str = ""
    rejected: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


MAX_REJECTED = 8


def _word_set(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def mmr(relevance: np.ndarray, sim: np.ndarray, n: int, lam: float = 0.7) -> list[int]:
    """Indices of ``n`` items picked by maximal marginal relevance: ``relevance`` ``(N,)``, pairwise ``sim``
    ``(N, N)``; ``lam`` weighs relevance against redundancy."""
    picked: list[int] = []
    left = list(range(len(relevance)))
    while left and len(picked) < n:
        red = sim[np.ix_(left, picked)].max(axis=1) if picked else np.zeros(len(left))
        best = int(np.argmax(lam * relevance[left] - (1 - lam) * red))
        picked.append(left.pop(best))
    return picked


def generate_copy(
    engine,
    brief: AdBrief,
    n: int = 8,
    num_candidates: int = 64,
    safety=None,
    guard=None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    seed: int = 0,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = 0.95,
    min_p: float = 0.0,
    batch_size: int = 16,
    fixup: bool = True,
    lam: float = 0.7,
    constrained: bool = False,
    progress: Callable[[int], None] | None = None,
) -> CopyResult:
    """Ad variants for ``brief``; see the module docstring.

    ``engine``: an ``inference.engine.Engine`` (ideally a chat model fine-tuned with ``tweetlm sft``, whose set
    teaches brief instructions). ``safety``: an
    ``ads.safety.SafetyClassifier``; ``guard``: an ``ads.guard.MemorizationGuard``; both are required (the
    constraints they check are hard ones). ``embed``: texts -> unit vectors, for ranking (optional). Candidate
    ``i`` is sampled with seed ``seed + i``. Raises ``ValueError`` for ``n`` outside 1..``MAX_N``,
    ``num_candidates`` outside ``n``..``MAX_CANDIDATES``, a brief prompt that leaves the model no room, or a
    missing ``safety``/``guard``.
    """
    from tweetlm.inference.engine import SamplingParams

    brief.validate()
    if not 1 <= n <= MAX_N:
        raise ValueError(f"n must be in 1..{MAX_N}, got {n}")
    if not n <= num_candidates <= MAX_CANDIDATES:
        raise ValueError(f"num_candidates must be in n..{MAX_CANDIDATES} (n={n}), got {num_candidates}")
    if safety is None or guard is None:
        raise ValueError("ad copy needs a safety classifier and a memorization guard (hard constraints)")
    conv = [{"role": "user", "content": brief.instruction()}]
    room = engine.max_seq_len - len(engine.chat_format.encode_prompt(conv))
    if room < 8:
        raise ValueError(f"the brief's prompt leaves {room} tokens of the model's {engine.max_seq_len}-token context")
    required = brief.constraints() if constrained else []
    raw: list[str] = []
    for start in range(0, num_candidates, batch_size):
        idx = range(start, min(start + batch_size, num_candidates))
        params = [
            SamplingParams(max_tokens=min(room, 96), temperature=temperature, top_p=top_p, min_p=min_p, seed=seed + i,
                           tweet_mode=True, required=list(required))
            for i in idx
        ]  # fmt: skip
        raw += [" ".join(c.text.split()) for c in engine.chat([conv] * len(params), params)]
        if progress:
            progress(len(params))

    lang = brief.lang or None
    raw_safe = safety.classify(raw, [lang] * len(raw))
    raw_guard = [guard.check(t) for t in raw]
    raw_ok = [not violations(t, brief) and not s.unsafe and not g.copy for t, s, g in zip(raw, raw_safe, raw_guard)]
    raw_failures: Counter[str] = Counter()
    for t, s, g in zip(raw, raw_safe, raw_guard):
        v = violations(t, brief)
        raw_failures.update({x.split(":")[0] for x in v} | {x for x in v if ":" in x})
        raw_failures.update(["unsafe"] * s.unsafe + ["near_copy_of_training_post"] * g.copy)

    fixed = [fix_up(t, brief) if fixup and not any(v.startswith("banned") for v in violations(t, brief)) else t
             for t in raw]  # fmt: skip
    safe = safety.classify(fixed, [lang] * len(fixed))
    failures: Counter[str] = Counter()
    ok: list[int] = []
    checks = []
    for i, t in enumerate(fixed):
        reasons = [v.split(":")[0] for v in violations(t, brief)]
        if safe[i].unsafe:
            reasons.append("unsafe")
        g = guard.check(t)
        if g.copy:
            reasons.append("near_copy_of_training_post")
        checks.append(g)
        failures.update(set(reasons))
        if not reasons:
            ok.append(i)
    seen: set[str] = set()
    uniq = [i for i in ok if not (fixed[i].casefold() in seen or seen.add(fixed[i].casefold()))]
    texts = [fixed[i] for i in uniq]
    if texts:
        if embed is not None:
            vecs = np.asarray(embed(texts + [brief.query()]), dtype=np.float32)
            rel, sim = vecs[:-1] @ vecs[-1], vecs[:-1] @ vecs[:-1].T
        else:
            sets = [_word_set(t) for t in texts]
            q = _word_set(brief.query())
            rel = np.array([len(s & q) / max(len(s | q), 1) for s in sets])
            sim = np.array([[len(a & b) / max(len(a | b), 1) for b in sets] for a in sets])
        rel = rel + 0.05 * np.array([raw_ok[i] for i in uniq])  # as sampled beats fixed up, all else equal
        order = mmr(rel, sim, n, lam)
    else:
        order, rel = [], np.zeros(0)
    variants = [
        Variant(
            text=texts[j],
            weighted_length=weighted_length(texts[j]),
            fixed_up=fixed[uniq[j]] != raw[uniq[j]],
            relevance=float(rel[j]),
            safety_score=float(safe[uniq[j]].score),
            train_jaccard=float(checks[uniq[j]].jaccard),
            checks=constraint_checks(texts[j], brief, safe[uniq[j]], checks[uniq[j]]),
        )
        for j in order
    ]
    rejected = [
        {"text": t, "checks": constraint_checks(t, brief, s, g)}
        for t, s, g, ok_raw in zip(raw, raw_safe, raw_guard, raw_ok)
        if not ok_raw
    ][:MAX_REJECTED]
    note = "" if len(variants) >= n else f"only {len(variants)} of {num_candidates} candidates passed every constraint"
    return CopyResult(
        variants=variants,
        requested=n,
        candidates=len(raw),
        raw_pass=int(sum(raw_ok)),
        raw_pass_rate=float(np.mean(raw_ok)) if raw else 0.0,
        passed=len(ok),
        failures=dict(sorted(failures.items())),
        raw_failures=dict(sorted(raw_failures.items())),
        segment=brief.segment,
        note=note,
        rejected=rejected,
    )


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """distinct-n (Li et al. 2016): distinct word n-grams / all word n-grams over ``texts`` (0 when none)."""
    grams = [tuple(w[i : i + n]) for t in texts for w in [t.casefold().split()] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
