"""What every config section shares: the error type and the one way a `check()` reports a problem."""
from __future__ import annotations


class ConfigError(ValueError):
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
