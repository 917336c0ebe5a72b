"""Curation settings (`Config.curate`): one dataclass per raw source, defaults from LIMA sec. 1 (docs/paper.md sec. 1).

Thresholds the paper states carry its value and section; heuristics the paper leaves open are marked "ours".
`CurateConfig.check()` holds the rules the types cannot express; the curate stage relies on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import check_ranges, raise_first

# Selectors a config may name (selectors.SELECTORS minus `score`, which needs a Python scoring function and so
# can only be built in code). Kept here, not read from selectors.py, so loading a config imports no selection code.
CONFIG_SELECTORS = ("random", "longest", "quality", "kcenter", "kcenter_hashing")


@dataclass
class StackExchangeConfig:
    """Stack Exchange dumps -> STEM and other examples. Its answer rules (min/max_answer_chars, max_first_person,
    reference_phrases) are the one set of LIMA's rules: the source applies them, and so does the `quality`
    selector (`curate.selector`, the `select_quality` ablation) to whatever pool it is given."""

    # Upper bounds no real run reaches (check_ranges `limits`): past the counts' bounds a run scans dumps for days or
    # keeps every answer of a site in memory. The answer rules are thresholds, not counts: 10**9 stands for "no
    # limit" (the unfiltered-quality ablation, config/ablation_conditions.py), so that is their bound.
    LIMITS: ClassVar[dict[str, int]] = {
        "n_per_group": 1_000_000,
        "min_answer_score": 10**9,
        "min_answer_chars": 10**9,
        "max_answer_chars": 10**9,
        "max_first_person": 10**9,
        "min_title_words": 1_000,
        "candidates_per_site": 10_000_000,
    }

    dumps: list[str] = field(default_factory=list)
    """Site dumps: a folder holding Posts.xml, a site's .7z (needs py7zr), or a Posts.xml in a folder named after the site."""
    n_per_group: int = 200  # LIMA sec. 1: 200 STEM + 200 other questions
    tau: float = 3.0  # LIMA sec. 1: exchanges sampled with p proportional to size^(1/tau)
    min_answer_score: int = 10  # LIMA sec. 1: the top answer must score at least 10
    min_answer_chars: int = 1200  # LIMA sec. 1: drop answers shorter than 1,200 characters
    max_answer_chars: int = 4096  # LIMA sec. 1: drop answers longer than 4,096 characters
    max_first_person: int = 0  # LIMA sec. 1: drop answers written in the first person (I, me, my ... outside code)
    reference_phrases: list[str] = field(
        default_factory=lambda: [
            "as mentioned",
            "as others have",
            "as noted above",
            "stack exchange",
            "stackexchange",
            "stack overflow",
            "other answer",
            "another answer",
            "previous answer",
            "answer above",
            "answers above",
            "above answer",
            "accepted answer",
            "this answer",
            "the op",
            "op's",
        ]
    )
    """LIMA sec. 1: answers containing any of these (case-insensitive) refer to other answers and are dropped."""
    min_title_words: int = 4
    """Self-contained title heuristic (ours; the paper gives no rule): at least this many words."""
    title_context_phrases: list[str] = field(
        default_factory=lambda: [
            "this code",
            "this error",
            "this function",
            "this query",
            "this script",
            "this program",
            "this problem",
            "this equation",
            "this integral",
            "this image",
            "this picture",
            "this sentence",
            "this situation",
            "the following",
            "the above",
            "below",
            "attached",
            "help with this",
            "what is wrong with",
        ]
    )
    """Titles containing these point at the question body, so they are not self-contained (ours)."""
    candidates_per_site: int = 1000
    """Highest-scoring eligible questions kept per site while streaming (bounds memory; ours)."""
    title_prompt_prob: float = 0.5  # LIMA sec. 1: the prompt is the title or the body, at random
    stem_sites: list[str] | None = None
    """STEM exchange names; None = the shipped list of 75 (sources/se_sites.py, LIMA sec. 1)."""
    other_sites: list[str] | None = None
    """Other exchange names; None = the shipped list of 99 (LIMA sec. 1)."""


@dataclass
class WikiHowConfig:
    files: list[str] = field(default_factory=list)
    """Article CSVs: wikihowAll.csv (`headline,title,text`), wikihowSep.csv (one row per step, grouped by title),
    or any CSV with title/text (and category) columns."""
    LIMITS: ClassVar[dict[str, int]] = {"n": 1_000_000, "min_response_chars": 1_000_000}  # LIMA: 200 articles

    n: int = 200  # LIMA sec. 1: 200 wikiHow articles
    category_column: str | None = None
    """Category column; None = `category`/`categories` when present, else one category for all rows."""
    rewrite_opening: bool = True  # LIMA sec. 1: an opening "This article..." becomes "The following answer..."
    min_response_chars: int = 0
    """Drop articles with shorter cleaned bodies (ours; 0 = off, as in the paper)."""


@dataclass
class WritingPromptsConfig:
    submissions: list[str] = field(default_factory=list)
    """Pushshift submission dumps (.zst NDJSON): WritingPrompts_submissions.zst or monthly RS_*.zst."""
    LIMITS: ClassVar[dict[str, int]] = {"n": 1_000_000, "candidates": 10_000_000, "min_story_chars": 1_000_000}

    comments: list[str] = field(default_factory=list)
    """Pushshift comment dumps (.zst NDJSON) holding the stories (top-level comments)."""
    n: int = 150  # LIMA sec. 1: 150 prompt/story pairs (hand-picked from top posts; here: top by score)
    subreddit: str = "WritingPrompts"
    """Subreddit to keep (matched case-insensitively; monthly dumps hold every subreddit)."""
    prompt_tags: list[str] = field(default_factory=lambda: ["WP", "EU", "CW", "TT", "SP", "RF"])
    """Title tags that mark a text prompt (image/media prompts and non-prompts are dropped)."""
    candidates: int = 1000
    """Top-scoring submissions kept while streaming (bounds memory; ours)."""
    min_story_chars: int = 0
    """Drop shorter stories (ours; the paper chose by hand; 0 = off)."""


@dataclass
class AskRedditConfig:
    submissions: list[str] = field(default_factory=list)
    """Pushshift submission dumps (.zst NDJSON) with r/AskReddit posts; their titles become test prompts."""
    LIMITS: ClassVar[dict[str, int]] = {"n": 1_000_000, "min_title_words": 1_000, "candidates": 10_000_000}

    n: int = 70  # LIMA sec. 1: 70 of the 300 test prompts are r/AskReddit titles
    subreddit: str = "AskReddit"
    """Subreddit to keep."""
    min_title_words: int = 4
    """Titles shorter than this are not usable prompts (ours)."""
    candidates: int = 1000
    """Top-scoring submissions kept while streaming (ours)."""


@dataclass
class NatInstConfig:
    tasks: list[str] = field(default_factory=list)
    """Super-Natural Instructions `tasks/` folders or task JSON files."""
    LIMITS: ClassVar[dict[str, int]] = {"n_tasks": 100_000}  # Super-Natural Instructions has ~1,600 tasks

    n_tasks: int = 50  # LIMA sec. 1: one example from each of 50 generation tasks
    categories: list[str] = field(
        default_factory=lambda: [
            "Question Generation",
            "Title Generation",
            "Story Composition",
            "Text Completion",
            "Sentence Composition",
            "Dialogue Generation",
            "Summarization",
            "Paraphrasing",
            "Data to Text",
            "Question Rewriting",
            "Sentence Expansion",
            "Poem Generation",
            "Explanation",
            "Long Text Generation",
        ]
    )
    """Task categories that count as natural-language generation (LIMA sec. 1)."""
    english_only: bool = True
    """Keep tasks whose input and output language is English."""


@dataclass
class DedupConfig:
    exact: bool = True
    """Drop prompts identical after normalising case, whitespace and punctuation."""
    # num_perm sizes a (documents x num_perm) signature array: 1e8 would be tens of GB; 64 is the default
    LIMITS: ClassVar[dict[str, int]] = {"ngram": 1_000, "num_perm": 4_096, "bands": 4_096}

    near: bool = True
    """Drop near-duplicate prompts (MinHash over character n-grams, LSH banding)."""
    threshold: float = 0.8
    """Estimated Jaccard similarity at or above which two prompts are near duplicates."""
    ngram: int = 5
    """Character n-gram size for MinHash shingles."""
    num_perm: int = 64
    """MinHash signature length (a multiple of `bands`)."""
    bands: int = 16
    """LSH bands; num_perm/bands rows per band."""
    decontaminate: bool = True
    """Also drop training candidates duplicating any dev or test prompt."""


@dataclass
class SEDialogueConfig:
    dumps: list[str] = field(default_factory=list)
    """Site folders (or .7z) holding Posts.xml and Comments.xml; empty = source off. Chains are unedited candidates."""
    LIMITS: ClassVar[dict[str, int]] = {
        "n": 1_000_000,
        "min_answer_score": 1_000_000,
        "min_turns": 1_000,
        "max_turns": 1_000,
        "min_comment_chars": 1_000_000,
        "candidates_per_site": 10_000_000,
    }

    n: int = 20  # LIMA sec. 1: 20 of the 30 dialogue chains are (hand-edited) Stack Exchange comment chains
    tau: float = 3.0
    """Exchanges sampled with p proportional to size^(1/tau), as the single-turn questions (LIMA sec. 1)."""
    min_answer_score: int = 10
    """The top answer must score at least this (ours, after the single-turn rule of LIMA sec. 1)."""
    min_turns: int = 4
    """Fewest messages in a chain: question, answer and at least one follow-up exchange (ours)."""
    max_turns: int = 10
    """Longer threads are cut to this many messages, ending on an answerer turn (ours)."""
    min_comment_chars: int = 20
    """A chain with a follow-up comment shorter than this after cleaning ("Thanks!") is dropped (ours)."""
    candidates_per_site: int = 1000
    """Highest-scoring questions kept per site while streaming (bounds memory; ours)."""


@dataclass
class CurateConfig:
    train_files: list[str] = field(default_factory=lambda: ["demo:train.jsonl"])
    """Training JSONL files (canonical messages, GAIR/lima, ShareGPT or Alpaca rows). `demo:` = shipped data."""
    LIMITS: ClassVar[dict[str, int]] = {"select_n": 100_000_000}  # LIMA trains on 1,000; ablations on 2K-32K

    dev_files: list[str] = field(default_factory=lambda: ["demo:dev.jsonl"])
    """Held-out examples with responses: perplexity per epoch and checkpoint selection (LIMA sec. 2: 50 dev prompts)."""
    test_files: list[str] = field(default_factory=lambda: ["demo:test.jsonl"])
    """Test prompts: conversations ending with a user turn (LIMA sec. 2: 300 test prompts)."""
    tokenizer: str | None = None
    """Tokenizer for the data card's token counts; None = the base model's."""
    count_tokens: bool = True
    """Token counts in the data card (False skips loading a tokenizer: characters only)."""
    stackexchange: StackExchangeConfig = field(default_factory=StackExchangeConfig)
    """Stack Exchange dumps -> STEM and other training examples (LIMA sec. 1)."""
    wikihow: WikiHowConfig = field(default_factory=WikiHowConfig)
    """wikiHow CSV -> training examples (LIMA sec. 1)."""
    writingprompts: WritingPromptsConfig = field(default_factory=WritingPromptsConfig)
    """r/WritingPrompts dumps -> training examples (LIMA sec. 1)."""
    askreddit: AskRedditConfig = field(default_factory=AskRedditConfig)
    """r/AskReddit dumps -> test prompts (LIMA sec. 1)."""
    natinst: NatInstConfig = field(default_factory=NatInstConfig)
    """Super-Natural Instructions tasks -> training examples (LIMA sec. 1)."""
    se_dialogue: SEDialogueConfig = field(default_factory=SEDialogueConfig)
    """Stack Exchange comment chains -> unedited multi-turn candidates (LIMA sec. 1 dialogue; off by default)."""
    dedup: DedupConfig = field(default_factory=DedupConfig)
    """Exact and near-duplicate removal, and decontamination against dev/test prompts."""
    strict_counts: bool = True
    """A configured raw source yielding fewer than its target count is an error (False: take what there is)."""
    selector: str | None = None
    """After curation, keep `select_n` training examples by: random, quality, longest, kcenter, kcenter_hashing."""
    select_n: int | None = None
    """Training-set size for `selector`; None = no selection."""

    def check(self) -> None:
        """Curate settings the dataclass types cannot express; a bad value is a ConfigError naming the key."""
        se, d, sd = self.stackexchange, self.dedup, self.se_dialogue
        # every numeric field of every source (score thresholds may be any integer: scores go negative)
        for section, prefix, rules in (
            (
                se,
                "curate.stackexchange",
                {
                    "n_per_group": ">=0",
                    "tau": ">0",
                    "min_answer_chars": ">=0",
                    "max_answer_chars": ">=0",
                    "max_first_person": ">=0",
                    "min_title_words": ">=0",
                    "candidates_per_site": ">=1",
                    "title_prompt_prob": "[0,1]",
                    "min_answer_score": "any",
                },
            ),
            (self.wikihow, "curate.wikihow", {"n": ">=0", "min_response_chars": ">=0"}),
            (self.writingprompts, "curate.writingprompts", {"n": ">=0", "candidates": ">=1", "min_story_chars": ">=0"}),
            (self.askreddit, "curate.askreddit", {"n": ">=0", "min_title_words": ">=0", "candidates": ">=1"}),
            (self.natinst, "curate.natinst", {"n_tasks": ">=0"}),
            (d, "curate.dedup", {"threshold": "(0,1]", "ngram": ">=1", "num_perm": ">=1", "bands": ">=1"}),
            (
                sd,
                "curate.se_dialogue",
                {
                    "n": ">=0",
                    "tau": ">0",
                    "min_turns": ">=1",
                    "max_turns": ">=1",
                    "min_comment_chars": ">=0",
                    "candidates_per_site": ">=1",
                    "min_answer_score": "any",
                },
            ),
            (self, "curate", {"select_n": ">=1?"}),
        ):
            check_ranges(section, prefix, rules, type(section).LIMITS)
        raise_first(
            [
                (
                    sd.min_turns < 2 or sd.max_turns < sd.min_turns,
                    "curate.se_dialogue.min_turns must be >= 2 and <= max_turns",
                ),
                (
                    se.min_answer_chars > se.max_answer_chars,
                    "curate.stackexchange.min_answer_chars exceeds max_answer_chars",
                ),
                (d.num_perm % d.bands, "curate.dedup.num_perm must be a positive multiple of curate.dedup.bands"),
                (
                    self.selector is not None and self.selector not in CONFIG_SELECTORS,
                    f"curate.selector must be one of {sorted(CONFIG_SELECTORS)} or null",
                ),
                # the stage selects only when both are set; one alone would be silently ignored
                (
                    (self.selector is None) != (self.select_n is None),
                    "curate.selector and curate.select_n go together: set both (a selector and a size) or neither",
                ),
            ]
        )
