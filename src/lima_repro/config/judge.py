"""Judge settings (`Config.judge`): LIMA sec. 4's GPT-4 judge and its protocols as defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from .base import check_ranges, looks_like_key, raise_first

# The protocols judging.protocols.PROTOCOLS defines (LIMA sec. 4-5), named here so that checking a config does
# not import the judging package (it pulls torch). A test keeps the two in step.
PROTOCOL_NAMES = ("pairwise", "absolute", "likert", "safety", "dialogue")
# What judge.sample_sizes may name: the protocols, and `ood`, the absolute grades of the prompts tagged `ood`
# (Fig. 3's out-of-distribution row, docs/paper.md sec. 5), which are drawn apart from absolute's random ones.
SAMPLE_KEYS = (*PROTOCOL_NAMES, "ood")


def protocol_problem(names, key: str, known: tuple[str, ...] = PROTOCOL_NAMES) -> str | None:
    """The error for judge protocol names not in `known` (under config key `key`), or None when all are."""
    unknown = [p for p in names if p not in known]
    return f"{key}: unknown judge protocol(s) {unknown}; available: {', '.join(known)}" if unknown else None


def sample_size_problem(sizes: dict, bound: int) -> str | None:
    """The error for `judge.sample_sizes` (a protocol or `ood` -> a count in [1, bound] or null), or None."""
    unknown = protocol_problem(sizes, "judge.sample_sizes", SAMPLE_KEYS)
    bad = {k: n for k, n in sizes.items() if n is not None and (type(n) is not int or not 1 <= n <= bound)}
    if unknown or not bad:
        return unknown
    return (
        f"judge.sample_sizes: {bad} must be prompt counts in [1, {bound:,}] or null (every prompt); "
        "leave a protocol out of judge.protocols to skip it"
    )


def key_name_problem(name: str) -> str | None:
    """Why `judge.api_key_env` is not the NAME of an environment variable (None when it is, or is ''). A value
    that is not a name, or has a long run of mixed letters and digits, is likely a pasted key: the message never
    repeats it."""
    if name == "" or (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and not looks_like_key(name)):
        return None
    return (
        "judge.api_key_env must be the NAME of the environment variable holding the API key (e.g. "
        "OPENAI_API_KEY), not the key; the value given is not such a name (it may be a key, so it is not shown). "
        "Fix: export OPENAI_API_KEY=<key> in the shell and set judge.api_key_env=OPENAI_API_KEY"
    )


@dataclass
class JudgeConfig:
    # Upper bounds no real run reaches (check_ranges `limits`): past them judging waits for years or allocates tens
    # of GB before failing. LIMA judges 300 prompts with one request each (50 for the ablations' ChatGPT).
    LIMITS: ClassVar[dict[str, int | float]] = {
        "max_prompts": 10_000_000,
        "sample_sizes": 10_000_000,  # prompts per protocol, as max_prompts
        "concurrency": 10_000,  # requests in flight; any server's rate limit is far lower
        "max_retries": 100,  # with a backoff of up to 60 s each: over an hour on one request
        "parse_retries": 100,
        "backoff_s": 3_600.0,  # the first wait, in seconds
        "timeout_s": 86_400.0,  # a day for one request
        "max_retry_s": 604_800.0,  # a week of a failing server
        "max_tokens": 1_048_576,  # the longest context windows of today's models
        "batch_size": 100_000,
        "n_bootstrap": 100_000,  # 10,000 resamples already fix a 95% interval to a tenth of a point
        "selection_window": 10_000,  # epochs, as train.epochs' bound
    }

    backend: str = "openai"  # LIMA sec. 4: GPT-4 annotates with the crowd's instructions
    """`openai` (any OpenAI-compatible server: OpenAI, vLLM, TGI, Ollama) or `local` (a Hugging Face model)."""
    model: str = "gpt-4"  # LIMA sec. 4 (ChatGPT graded the sec. 5 ablations)
    """Judge model: the server's model name, or for `local` a HF id/folder or `smollm2-135m-instruct` (weak, offline)."""
    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 for vLLM; None = OpenAI."""
    api_key_env: str = "OPENAI_API_KEY"
    """NAME of the environment variable holding the API key (the key itself is never stored); '' = no key."""
    protocols: list[str] = field(default_factory=lambda: ["pairwise", "absolute", "likert", "safety", "dialogue"])
    """Protocols to run (LIMA sec. 4-5): pairwise, absolute, likert, safety, dialogue."""
    system: str = "last"
    """Generations label judged as "ours": `last` = the highest epoch in generations.jsonl, or a label (`epoch-3`)."""
    baselines: list[str] = field(default_factory=lambda: ["base"])
    """Labels compared against `system` pairwise; rows from generations.jsonl or from `baseline_files`."""
    baseline_files: dict[str, str] = field(default_factory=dict)
    """name -> AlpacaEval model_outputs.json or JSONL {prompt_id, output}: other systems' responses to import."""
    generations_file: str | None = None
    """Generations to judge; None = `<run_dir>/generate/generations.jsonl`."""
    max_prompts: int | None = None
    """Judge N prompts drawn at random with the run's seed (LIMA sec. 4 judged 50 random test prompts); None = all."""
    sample_sizes: dict[str, int | None] = field(default_factory=dict)
    """protocol -> the number of prompts it is asked on, drawn at random with the run's seed (the same prompts for
    every system, recorded in results.json); absent or null = every prompt. LIMA (docs/paper.md sec. 4): pairwise on
    every test prompt, absolute grades on 50 random ones, safety on the sensitive ones; `ood` = how many prompts
    tagged `ood` get absolute grades besides absolute's own draw (Fig. 3's 20, docs/paper.md sec. 5; absent = all)."""
    templates_dir: str | None = None
    """Folder of `<protocol>.txt` templates replacing the shipped ones by name, or the name of a shipped template
    set: `strict` (pairwise adds criteria the paper did not give: position and length alone are no merit)."""
    cache_dir: str | None = None
    """Judgment cache (share it across runs to pay once); None = `<run_dir>/judge/cache`."""
    concurrency: int = 8
    """Most requests in flight at once (openai backend). The judge starts there and adapts to what the server
    sustains (AIMD): a client timeout, 429, 5xx or connection error halves it (once per wave of failures), a run of
    as many successes as requests in flight adds one back, never above this."""
    max_retries: int = 6
    """Retries on 429, 5xx, timeouts and connection errors, with exponential backoff."""
    backoff_s: float = 1.0
    """First backoff wait; doubles per retry (a server's Retry-After wins when longer)."""
    timeout_s: float = 120.0
    """Seconds one request may take for its own answer. Its total deadline (connect and every read, however slowly
    the server trickles bytes) counts from when it is sent and is queue-aware: `timeout_s` plus, for each request
    already in flight, the server's observed time per answer (`timeout_s` until one is seen), so a server answering
    one request at a time does not time out queued requests it will still compute (they cannot be cancelled)."""
    max_retry_s: float = 600.0
    """Wall-clock seconds a judging run may spend with requests failing and waiting for retries (429 for ever, a
    trickling or dead server); then the stage fails in one line, with every answer received cached for a rerun."""
    parse_retries: int = 2
    """Re-requests when an output has no parsable verdict, each with a reminder of the answer format appended (a
    judge at temperature 0 would answer the same request the same way); then it is stored as invalid and counted."""
    retry_invalid: bool = False
    """Ask again for verdicts cached as invalid (no parsable verdict, e.g. an empty answer); False = keep them."""
    temperature: float = 0.0
    """Judge sampling temperature (0 = as repeatable as the server allows)."""
    max_tokens: int = 512
    """Tokens a judge may write (reasoning + verdict); for `local` 0 = probabilities only, no text."""
    price_input_per_mtok: float = 0.0
    """USD per million prompt tokens, for the cost record (0 = unknown / free)."""
    price_output_per_mtok: float = 0.0
    """USD per million completion tokens."""
    batch_size: int = 8
    """Requests per forward pass (local backend)."""
    local_verdict: str = "probs"
    """Local judge verdict from `probs` (next-token probabilities of the labels) or `text` (parsed output)."""
    n_bootstrap: int = 2000
    """Bootstrap resamples for the win/tie/loss confidence intervals."""
    token_shift: bool = True
    """Run the superficial-alignment token-shift test (Lin et al. 2023) on the system's answers (responses that
    ended at EOT)."""
    reference_check: bool = True
    """Score every system against the dev set's reference answers, independently of the judge: held-out perplexity
    of the references, and embedding similarity of its answers to them (needs `generate.dev_responses`)."""
    annotations_dir: str | None = None
    """Human labels from the annotator (agreement with the judge); None = `<run_dir>/annotations`."""
    selection_window: list[int] = field(default_factory=lambda: [5, 10])  # LIMA sec. 3: chosen between epochs 5 and 10
    """Epoch range checkpoint selection chooses from (on dev-set generations)."""
    dialogue_files: dict[str, str] = field(default_factory=dict)  # LIMA Fig. 7: "1,000 ex." vs "1,030 ex."
    """system -> transcripts JSONL ({id, source, messages, tags}); every assistant turn graded (dialogue_turns.csv)."""
    position_calibration: str = "balanced"  # Wang et al. 2023; the paper's annotators saw one order only
    """How a pair's two orders become one verdict: `balanced` (average each system's label probability over the
    two positions, so a fixed preference for "A" cancels; needs label probabilities: local judges) or `swap`
    (MT-Bench: the same verdict twice wins, anything else is a tie; what text-only judges always get)."""
    calibration_margin: float = 0.05
    """With `balanced`: calibrated probabilities of the two systems closer than this are a tie (ours)."""
    length_control: bool = True
    """Add length-controlled win rates to the pairwise results (length band + logistic regression on length)."""
    lc_ratio_band: float = 1.5
    """Length-controlled band: pairs whose longer response is at most this many times the shorter one."""
    max_cost_usd: float | None = None
    """Refuse to send uncached openai requests whose estimated cost (chars/4 prompt tokens) exceeds this; None = no cap."""

    def check(self) -> None:
        """Judge settings the types cannot express (whether `dialogue_files` exist is the judge stage's own
        input check: a config is valid before its transcripts are recorded)."""
        check_ranges(
            self,
            "judge",
            {
                "max_prompts": ">=1?",
                "concurrency": ">=1",
                "max_retries": ">=0",
                "backoff_s": ">=0",
                "timeout_s": ">0",
                "max_retry_s": ">=0",
                "parse_retries": ">=0",
                "temperature": ">=0",
                "max_tokens": ">=0",
                "price_input_per_mtok": ">=0",
                "price_output_per_mtok": ">=0",
                "batch_size": ">=1",
                "n_bootstrap": ">=1",
                "calibration_margin": "[0,1)",
                "lc_ratio_band": ">=1",
                "max_cost_usd": ">=0?",
            },
            self.LIMITS,
        )
        protocols = protocol_problem(self.protocols, "judge.protocols")
        sizes = sample_size_problem(self.sample_sizes, self.LIMITS["sample_sizes"])
        w = self.selection_window
        raise_first(
            [
                (bool(key_name_problem(self.api_key_env)), key_name_problem(self.api_key_env) or ""),
                (
                    self.backend not in ("openai", "local"),
                    f"judge.backend must be openai or local, got {self.backend!r}",
                ),
                (not self.model, "judge.model must name the judge model (a server's model name, or a HF id for local)"),
                (bool(protocols), protocols or ""),
                (bool(sizes), sizes or ""),
                (
                    self.local_verdict not in ("probs", "text"),
                    f"judge.local_verdict must be 'probs' or 'text', got {self.local_verdict!r}",
                ),
                (
                    self.position_calibration not in ("balanced", "swap"),
                    f"judge.position_calibration must be balanced or swap, got {self.position_calibration!r}",
                ),
                # run_select unpacks it as `lo, hi` and keeps checkpoints with lo <= epoch <= hi
                (
                    len(w) != 2
                    or not all(isinstance(e, int) for e in w)
                    or not 0 <= w[0] <= w[1] <= self.LIMITS["selection_window"],
                    f"judge.selection_window must be two epochs [lo, hi] with 0 <= lo <= hi <= "
                    f"{self.LIMITS['selection_window']:,}, got {w!r}",
                ),
            ]
        )
