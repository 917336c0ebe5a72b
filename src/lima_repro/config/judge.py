"""Judge settings (`Config.judge`): LIMA sec. 4's GPT-4 judge and its protocols as defaults."""
from __future__ import annotations

from dataclasses import dataclass, field

from .base import raise_first

# The protocols judging.protocols.PROTOCOLS defines (LIMA sec. 4-5), named here so that checking a config does
# not import the judging package (it pulls torch). A test keeps the two in step.
PROTOCOL_NAMES = ("pairwise", "absolute", "likert", "safety", "dialogue")


@dataclass
class JudgeConfig:
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
    """Judge only the first N prompts (demo); None = all."""
    templates_dir: str | None = None
    """Folder of `<protocol>.txt` templates replacing the shipped ones by name."""
    cache_dir: str | None = None
    """Judgment cache (share it across runs to pay once); None = `<run_dir>/judge/cache`."""
    concurrency: int = 8
    """Requests in flight at once (openai backend)."""
    max_retries: int = 6
    """Retries on 429, 5xx, timeouts and connection errors, with exponential backoff."""
    backoff_s: float = 1.0
    """First backoff wait; doubles per retry (a server's Retry-After wins when longer)."""
    timeout_s: float = 120.0
    """Per-request timeout."""
    parse_retries: int = 2
    """Re-requests when an output has no parsable verdict; then it is stored as invalid and counted."""
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
        unknown = [p for p in self.protocols if p not in PROTOCOL_NAMES]
        w = self.selection_window
        raise_first([
            (bool(unknown),
             f"judge.protocols: unknown judge protocol(s) {unknown}; available: {', '.join(PROTOCOL_NAMES)}"),
            (self.local_verdict not in ("probs", "text"),
             f"judge.local_verdict must be 'probs' or 'text', got {self.local_verdict!r}"),
            (self.concurrency < 1 or self.max_retries < 0 or self.parse_retries < 0,
             "judge: need concurrency >= 1, max_retries >= 0, parse_retries >= 0"),
            (self.position_calibration not in ("balanced", "swap"),
             f"judge.position_calibration must be balanced or swap, got {self.position_calibration!r}"),
            (not 0 <= self.calibration_margin < 1,
             f"judge.calibration_margin must be in [0, 1), got {self.calibration_margin}"),
            (self.lc_ratio_band < 1, f"judge.lc_ratio_band must be >= 1 (a length ratio), got {self.lc_ratio_band}"),
            (self.max_cost_usd is not None and self.max_cost_usd < 0,
             f"judge.max_cost_usd must be >= 0 or None, got {self.max_cost_usd}"),
            # run_select unpacks it as `lo, hi` and keeps checkpoints with lo <= epoch <= hi
            (len(w) != 2 or not all(isinstance(e, int) for e in w) or w[0] > w[1],
             f"judge.selection_window must be two epochs [lo, hi] with lo <= hi, got {w!r}"),
        ])
