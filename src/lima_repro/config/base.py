"""What every config section shares: the error types and the one way a `check()` reports a problem."""

from __future__ import annotations

import math
from typing import Any

from ..redaction import looks_like_key, redact


class UserError(Exception):
    """A problem with what the user gave (a config value, an input file, a command-line argument), not a bug in
    the package. Its message is one line naming what is wrong, where, and the fix; the CLI prints just that line
    (exit status 2) and keeps the traceback for `--debug`. ConfigError and data.DataError are user errors; a
    module with its own user-facing error derives it from this class."""


class ConfigError(UserError, ValueError):
    """A configuration key or value is invalid; the message names the key and the fix."""


# train and generate both cast with these (train.resolve_precision); one list so they cannot drift apart
PRECISIONS = ("auto", "fp32", "bf16")


def raise_first(problems: list[tuple[bool, str]]) -> None:
    """Raise ConfigError with the message of the first true condition, so a check reads as a table of
    (is it wrong, what to tell the user). Conditions are evaluated eagerly when the list is built, so one that
    could crash on a bad value (a division by zero) must guard itself with `and`/`or`."""
    for bad, msg in problems:
        if bad:
            raise ConfigError(msg)


NOT_SHOWN = "[not shown: it looks like a key]"


def hide_keys(text: str) -> str:
    """`text` with every key-looking part (`redaction.redact`) replaced by NOT_SHOWN: for a message built from what
    the user typed (argparse's, a path) where one of the words may be a key pasted in the wrong place."""
    return redact(text, marker=NOT_SHOWN, digests_allowed=False)


def shown(key: str, value: Any) -> str:
    """A value as an error message may show it: never for fields that name secrets, nor a value that looks like
    a key (a key pasted by mistake must not reach the terminal or a log), and cut short when long."""
    if "key" in key.lower():
        return f"a {type(value).__name__} (not shown: this field names an environment variable, never a key)"
    text = repr(value)
    if looks_like_key(text):
        return NOT_SHOWN
    return text if len(text) <= 80 else text[:77] + "..."


def check_ranges(
    section: object, prefix: str, rules: dict[str, str], limits: dict[str, int | float] | None = None
) -> None:
    """Range-check numeric fields of one config section. `rules` maps a field name to a rule: ">0", ">=0",
    ">=1", "[0,1]", "[0,1)", "(0,1]", "(0,1)" or "seed" (an int in [0, 2**32), what numpy accepts); a trailing "?"
    also allows null (None), e.g. ">=1?". NaN and infinity are rejected whatever the rule (NaN compares false
    with everything, so it would slip past a bound). `limits` maps a field to its upper bound, one no real run
    reaches: a value past it would run for days or allocate tens of GB before failing, so it fails here. The error
    names the key, the value and the range (or the bound) and the fix."""
    for name, rule in rules.items():
        value = getattr(section, name)
        optional = rule.endswith("?")
        rule = rule.rstrip("?")
        if value is None and optional:
            continue
        key = f"{prefix}.{name}" if prefix else name
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number{' or null' if optional else ''}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number {_RANGES[rule][1]}, got {value}")
        ok, text = _RANGES[rule]
        if not ok(value):
            raise ConfigError(f"{key} must be {text}{' (or null)' if optional else ''}, got {value}")
        bound = (limits or {}).get(name)
        if bound is not None and value > bound:
            raise ConfigError(
                f"{key} must be at most {bound:,} (far above any real run), got {value:,}; set a smaller value"
            )


_RANGES = {
    ">0": (lambda v: v > 0, "> 0"),
    ">=0": (lambda v: v >= 0, ">= 0"),
    ">=1": (lambda v: v >= 1, ">= 1"),
    "[0,1]": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "[0,1)": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "(0,1]": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "(0,1)": (lambda v: 0 < v < 1, "in (0, 1)"),
    "seed": (lambda v: isinstance(v, int) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "any": (lambda v: True, "a number"),  # e.g. a score threshold (scores go negative): only its bound is checked
}
