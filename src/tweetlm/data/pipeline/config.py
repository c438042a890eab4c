"""Settings of the ingestion pipeline (layer L1, data): one dataclass.

A run config whose ``data`` section is a ``PipelineConfig`` accepts ``--set data.tasks=2`` like any other field.
It holds settings only; the steps that read them are in ``steps.py``, ``text.py`` and ``decide.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tweetlm.data.formats.dispatch import MAX_TEXT_CHARS

DEFAULT_LANGUAGES = "en,id,ar,fr,de,hi,it,pt,es,ja,tr,nl"
"""Comma-separated ISO 639-1 codes language id chooses among: the languages of the shared corpora plus a few frequent
on X. A short list keeps lingua fast; anything else comes out as the closest of these or ``und``."""

TASKS_PER_WORKER = 8
"""Tasks per worker when ``PipelineConfig.tasks`` is 0 and ``workers`` is 2 or more: files are assigned to tasks by
size before anything is read, and bytes on disk are a poor guide to a file's cost (formats differ several-fold in
bytes per post, and lingua runs on some languages far more than others), so with few tasks per worker the slowest
task decides the stage. Measured on the shared corpora, 2 workers, the prepare stage's wall seconds
(``build.stage_seconds``): 8 tasks 12.6, 12.2 (the last task started as the other worker ran out and took 3.1 s
alone), 16 tasks 11.6, 11.9, 10.7 (2026-12-04, results/data_cpu2_202612.md); earlier, the whole build took 17.7 s
with 4 tasks per worker against 19.2 s with one."""


@dataclass
class PipelineConfig:
    """Attributes:
    val_fraction: share of posts from corpora without their own val split that go to validation
        (``text.hash_split``).
    mention_placeholder: replace ``@handle`` with ``@user`` (TweetEval's convention).
    url_placeholder: replace URLs with ``http``.
    fix_unicode: repair Unicode damage with ftfy (``text.normalize_text``).
    min_chars: posts shorter than this after normalizing are dropped as ``too_short``.
    max_chars: posts longer than this after normalizing are dropped as ``too_long`` (0: no limit).
    max_record_chars: a post whose text is longer than this as read is quarantined as ``too_long`` by the reader,
        before normalizing, language id and MinHash, so one huge record cannot exhaust memory or stall a task
        (``data.formats.files.MAX_TEXT_CHARS``; 0: no limit).
    lang_detect: ``"all"`` (language id on every post), ``"missing"`` (only where the reader gave no ``lang``) or
        ``"off"``. The detected code goes to the ``lang_detected`` column; ``lang`` keeps the reader's value and is
        filled from the detection where the reader had none.
    lang_detector: ``"fasttext+lingua"`` (fastText's ``lid.176.ftz``, lingua where fastText is unsure),
        ``"fasttext"`` or ``"lingua"`` (low-accuracy mode) alone; see ``data.pipeline.langid``. On posts of known
        language (XLM-T, the Indonesian corpora, TweetEval; ``benchmarks/results/langid_cpu2_202612.md``) the
        combination was right on 96.3% (mean over 8 languages) against 94.4% for fastText and 93.7% for lingua,
        at 1.3-1.8x lingua's posts per CPU second (two runs on a busy machine).
    lang_unsure_below: with ``fasttext+lingua``, lingua decides where fastText's top label is not one of
        ``languages`` or has a probability below this (0.5 had the best mean accuracy of 0.3 to 0.7; 21% of those
        posts went to lingua).
    lang_short_below: with ``fasttext+lingua``, lingua also decides posts with fewer characters than this (URLs,
        mentions and hashtags removed); 0: off, the default, because sending posts under 10 or 20 characters to
        lingua lowered accuracy on those posts at every threshold measured.
    languages: comma-separated ISO 639-1 codes language id may answer (see ``DEFAULT_LANGUAGES``); a string, like
        every field here, so ``--set`` and the saved JSON config take it as is.
    keep_languages: comma-separated codes; when not empty, posts whose ``lang`` is not listed are dropped as
        ``language``.
    spam_min_tokens: the ratio filters below apply to posts of at least this many whitespace tokens.
    max_hashtag_ratio, max_mention_ratio, max_url_ratio: a post whose share of hashtag / @mention / URL tokens
        exceeds the value is dropped as ``spam_hashtags`` / ``spam_mentions`` / ``spam_urls`` (1.0: off).
    max_template_repeats: posts sharing one template (case-folded, digits, URLs and mentions masked) beyond this
        many are dropped as ``repeated_template`` (bot output such as "Day 12 of asking @x"); 0: off.
    scrub_emails, scrub_phones: replace e-mail addresses with ``<email>`` and phone numbers with ``<phone>``.
    scrub_handles: replace ``@handle`` with ``@user`` in the PII step (same as ``mention_placeholder``).
    retweet_collapse: a retweet whose original is in the corpus is dropped (``retweet_collapsed``) and counted on
        the original (``retweets`` column); retweets of a missing original keep one copy.
    drop_truncated: drop posts whose text the source cut off (``Post.truncated``: a retweet without its original,
        a v1.1 compat text, a generic column cut at a fixed length) as ``truncated_text``, after retweet collapse
        (so a cut retweet still counts on its original) and before threads. Off by default: such a post is kept
        and marked (the ``truncated`` column, counted in the report), because its text up to the cut is still its
        author's words, most cut posts are retweets that collapse onto their original anyway, and a default that
        drops would silently change what an existing corpus holds. Turn it on when the model should not learn to
        end posts in mid-word with an ellipsis.
    threads: replies whose parent is kept are joined with it into one ``kind="thread"`` document.
    exact_dedup: drop exact duplicates (``duplicate_of_val`` / ``duplicate``), validation copies first.
    near_dedup: MinHash LSH near-duplicate removal (``near_duplicate_of_val`` / ``near_duplicate``).
    minhash_num_perm, minhash_threshold, minhash_shingle: signature length, Jaccard threshold of the LSH and
        character shingle length (of the case-folded, whitespace-collapsed text).
    near_dedup_min_chars: texts shorter than this are left to exact dedup (a few shingles make noisy sketches).
    tasks: number of datatrove tasks of the per-task stage; each reads its own files of the input
        (``data.formats.dispatch.assign_files``). 0 (default): ``TASKS_PER_WORKER`` x ``workers`` when
        ``workers`` is 2 or more and the executor is local, else 1 (``task_count``).
    workers: tasks run at the same time on this machine (0: as many as tasks). With more tasks than workers, a
        worker that finishes one task takes the next, so tasks of unequal cost even out.
    executor: ``"local"`` (datatrove LocalPipelineExecutor), ``"slurm"`` or ``"ray"``.
    write_rejects: write every dropped document, with its reason, under ``<work>/rejects/<step>/``.
    keep_prepared: keep the tasks' intermediate files after the corpus is written (``<work>/prepared/``: texts
        and MinHash signatures, about the size of the corpus again; ``<work>/lsh/``: LSH band hashes and
        candidates); by default they are deleted, and the completion markers still make a rerun skip every stage.
    columns: column mapping for CSV/JSONL/Parquet input whose columns have other names, e.g.
        ``"text=body,id=post_id,labels.sentiment=label"`` (``data.formats.tabular.ColumnMap.parse``); empty: the
        readers' defaults.
    """

    val_fraction: float = 0.05
    mention_placeholder: bool = False
    url_placeholder: bool = False
    fix_unicode: bool = True
    min_chars: int = 1
    max_chars: int = 0
    max_record_chars: int = MAX_TEXT_CHARS
    lang_detect: str = "all"
    lang_detector: str = "fasttext+lingua"
    lang_unsure_below: float = 0.5
    lang_short_below: int = 0
    languages: str = DEFAULT_LANGUAGES
    keep_languages: str = ""
    spam_min_tokens: int = 4
    max_hashtag_ratio: float = 0.6
    max_mention_ratio: float = 0.8
    max_url_ratio: float = 0.6
    max_template_repeats: int = 20
    scrub_emails: bool = True
    scrub_phones: bool = True
    scrub_handles: bool = False
    retweet_collapse: bool = True
    drop_truncated: bool = False
    threads: bool = True
    exact_dedup: bool = True
    near_dedup: bool = True
    minhash_num_perm: int = 64
    minhash_threshold: float = 0.8
    minhash_shingle: int = 5
    near_dedup_min_chars: int = 20
    tasks: int = 0
    workers: int = 0
    executor: str = "local"
    write_rejects: bool = False
    keep_prepared: bool = False
    columns: str = ""

    def task_count(self) -> int:
        """The number of tasks of the per-task stage: ``tasks``, or for 0 ``TASKS_PER_WORKER * workers`` on the
        local executor with 2 or more ``workers``, else 1."""
        if self.tasks:
            return self.tasks
        return TASKS_PER_WORKER * self.workers if self.workers > 1 and self.executor == "local" else 1

    def language_list(self) -> list[str]:
        return [c.strip() for c in self.languages.split(",") if c.strip()]

    def keep_language_list(self) -> list[str]:
        return [c.strip() for c in self.keep_languages.split(",") if c.strip()]

    def validate(self) -> None:
        """``ValueError`` naming the field for settings no step can run with."""
        from lingua import IsoCode639_1

        for code in self.language_list():
            try:
                IsoCode639_1.from_str(code)
            except ValueError:
                raise ValueError(f"data.languages: {code!r} is not an ISO 639-1 code lingua knows") from None
        for code in self.keep_language_list():
            if code == "und":
                continue
            try:
                IsoCode639_1.from_str(code)
            except ValueError:
                raise ValueError(
                    f"data.keep_languages: {code!r} is not an ISO 639-1 code (e.g. en,es; 'und' for undetermined)"
                ) from None
        if self.lang_detect not in ("all", "missing", "off"):
            raise ValueError(f"data.lang_detect must be 'all', 'missing' or 'off', got {self.lang_detect!r}")
        from tweetlm.data.pipeline.langid import DETECTORS

        if self.lang_detector not in DETECTORS:
            raise ValueError(f"data.lang_detector must be one of {', '.join(DETECTORS)}; got {self.lang_detector!r}")
        if not 0.0 <= self.lang_unsure_below <= 1.0 or self.lang_short_below < 0:
            raise ValueError(
                "data.lang_unsure_below must be in [0, 1] and data.lang_short_below >= 0, got "
                f"{self.lang_unsure_below} and {self.lang_short_below}"
            )
        if self.executor not in ("local", "slurm", "ray"):
            raise ValueError(f"data.executor must be 'local', 'slurm' or 'ray', got {self.executor!r}")
        for name in ("tasks", "workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.{name} (--{name}) must be >= 0 (0: the default), got {getattr(self, name)}")
        if not 0.0 < self.minhash_threshold <= 1.0 or self.minhash_num_perm < 2 or self.minhash_shingle < 1:
            raise ValueError("data.minhash_threshold must be in (0, 1], minhash_num_perm >= 2, minhash_shingle >= 1")
        for name in ("max_hashtag_ratio", "max_mention_ratio", "max_url_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"data.{name} must be in [0, 1] (1: never drop), got {getattr(self, name)}")
        if self.max_record_chars < 0:
            raise ValueError(f"data.max_record_chars must be >= 0 (0: no limit), got {self.max_record_chars}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        self.column_map()

    def column_map(self):
        """The ``ColumnMap`` of ``columns`` (``None`` when empty); ``ValueError`` naming ``data.columns`` if bad."""
        if not self.columns:
            return None
        from tweetlm.data.formats.tabular import ColumnMap

        try:
            return ColumnMap.parse(self.columns)
        except ValueError as e:
            raise ValueError(f"data.columns: {e}") from None
