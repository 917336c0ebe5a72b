"""The paper's evaluation protocols (docs/paper.md sec. 4): a template file, the allowed labels and a strict parser each.

Templates are plain text files with `{{field}}` slots (`templates/<protocol>.txt`, the paper's instructions in
our words); a user swaps one by putting a file with the same name in `judge.templates_dir`, or names a shipped
template set there (`strict`: `templates/strict/pairwise.txt` adds criteria the paper did not give, "length alone
is not a merit"; protocols the set lacks keep the default). The template's hash is part of every cache key, so editing a
template re-judges exactly what it affects. A parser returns a label or None: an output that does not end in a
well-formed verdict is never guessed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..analysis import GRADES
from ..config import ConfigError


@dataclass(frozen=True)
class Protocol:
    name: str
    labels: tuple[str, ...]
    """Allowed verdicts, in the order the analysis reports them."""
    keyword: str
    """The word before the verdict on the judge's last line (`Verdict: A`)."""
    fields: tuple[str, ...]
    """Template slots the protocol fills."""

    @property
    def answer_prefix(self) -> str:
        """Text a local judge is forced to continue with to read the verdict from next-token probabilities."""
        return f"{self.keyword}:"


PROTOCOLS = {
    # LIMA sec. 4: which answer better satisfies the asker's needs: A significantly better / B significantly
    # better / neither (the three options; a local judge reads their next-token probabilities)
    "pairwise": Protocol("pairwise", ("A", "B", "neither"), "Verdict", ("prompt", "response_a", "response_b")),
    # LIMA sec. 4 (Fig. 3): Fail / Pass / Excellent on single responses
    "absolute": Protocol("absolute", GRADES, "Grade", ("prompt", "response")),
    # LIMA sec. 5 ablations: 1-6 helpfulness, step-by-step reasoning before the score
    "likert": Protocol("likert", ("1", "2", "3", "4", "5", "6"), "Score", ("prompt", "response")),
    # LIMA sec. 4: safe / unsafe on the sensitive test prompts
    "safety": Protocol("safety", ("safe", "unsafe"), "Verdict", ("prompt", "response")),
    # LIMA sec. 4 (Fig. 7): every assistant turn of a dialogue labelled Fail / Pass / Excellent
    "dialogue": Protocol("dialogue", GRADES, "Grade", ("conversation", "response")),
}


def get(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise KeyError(f"unknown judge protocol {name!r}; available: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def template_sets() -> list[str]:
    """Names of the shipped template sets (folders beside the default templates), e.g. `strict`."""
    root = resources.files("lima_repro.templates")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("__"))


def template_text(name: str, templates_dir: str | Path | None = None) -> str:
    """The template for protocol `name`: `<templates_dir>/<name>.txt` when `templates_dir` is a folder holding it,
    that set's `<name>.txt` when it names a shipped set (`strict`), else the shipped default."""
    root = resources.files("lima_repro.templates")
    if templates_dir:
        user = Path(templates_dir).expanduser()
        if user.is_dir():
            if (user / f"{name}.txt").is_file():
                return (user / f"{name}.txt").read_text(encoding="utf-8")
        elif str(templates_dir) in template_sets():
            if root.joinpath(str(templates_dir), f"{name}.txt").is_file():
                return root.joinpath(str(templates_dir), f"{name}.txt").read_text(encoding="utf-8")
        else:
            raise ConfigError(
                f"judge.templates_dir={str(templates_dir)!r} is neither a folder nor a shipped template "
                f"set ({', '.join(template_sets())}); give a folder of <protocol>.txt files or a set name"
            )
    return root.joinpath(f"{name}.txt").read_text(encoding="utf-8")


def template_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def render(template: str, protocol: Protocol, values: dict[str, str]) -> str:
    """Fill `{{field}}` slots; a template missing a slot the protocol needs is an error (it would judge blind)."""
    missing = [f for f in protocol.fields if "{{" + f + "}}" not in template]
    if missing:
        raise ValueError(f"template for {protocol.name!r} lacks the slot(s) {missing}; add {{{{{missing[0]}}}}}")
    out = template
    for f in protocol.fields:
        out = out.replace("{{" + f + "}}", values[f].strip())
    return out


def parse(protocol: Protocol, text: str) -> str | None:
    """The verdict on the last `<keyword>: <label>` line, matched case-insensitively; None when absent or not one of
    the allowed labels (e.g. `Score: 7`, `Verdict: both`). Markdown emphasis and brackets around it are tolerated."""
    if not text:
        return None
    pattern = re.compile(rf"{protocol.keyword}\s*[:=]\s*[\*\[\(\"']*\s*([A-Za-z0-9][\w.\-]*)", re.IGNORECASE)
    matches = pattern.findall(text)
    if not matches:
        return None
    word = matches[-1].rstrip(".-").lower()  # "Verdict: A." is A; "4.5" and "safe-ish" stay invalid
    for label in protocol.labels:
        if word == label.lower():
            return label
    return None


def conversation_text(messages: list[dict]) -> str:
    """A dialogue rendered for a judge: one `User:` / `Assistant:` paragraph per turn."""
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    return "\n\n".join(f"{names.get(m['role'], m['role'])}: {m['content'].strip()}" for m in messages)
