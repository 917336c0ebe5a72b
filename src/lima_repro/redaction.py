"""What looks like a credential, and the one function that removes it from whatever the package writes or prints.

Keys come from the environment only (`judge.api_key_env`), so a key anywhere else was pasted by mistake: as
`judge.model`, inside `judge.base_url` (`https://user:KEY@host`, `?api_key=KEY`), as a notebook parameter or a
command-line argument. Every file writer (`files.py`), the cache file names, the progress bars and the CLI's error
lines pass their text through `redact`, so such a key never reaches a disk, a log or a terminal.

What counts as a key:
- a provider-prefixed key: `sk-...` (OpenAI, Anthropic), `hf_...`, `ghp_...`/`github_pat_...`, `glpat-...`, `xoxb-...`;
- a run of 20+ letters and digits mixing both (hex and base62 tokens of most providers); in files, a lowercase hex
  run of exactly 32, 40 or 64 characters is an id or digest the package writes itself (uuid4, git commit, SHA-256)
  and is kept, while a value the user types is refused whatever its form (`looks_like_key`);
- the password of a URL (`://user:PASSWORD@`), a credential query value (`?api_key=`, `&key=`, `token=`, ...), a
  token after `Bearer` (one with a digit, 16+ characters: prose such as "the bearer of" is not one);
- with `headers=True` (a server's error text, which may echo the request's headers) every value after
  `Authorization:`, `api-key=`, `x-api-key:` or `Bearer`, whatever it looks like.
"""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "[redacted]"

_PREFIXED = re.compile(r"\b(?:sk-|hf_|gh[pousr]_|github_pat_|glpat-|xox[abprs]-)[A-Za-z0-9_-]{10,}")
_MIXED_RUN = re.compile(r"[A-Za-z0-9]{20,}")
_DIGEST = re.compile(r"[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64}")
_URL_PASSWORD = re.compile(r"(?<=://)[^/\s:@?#]*:[^/\s@?#]+(?=@)")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:api[_-]?key|key|token|access[_-]?token|auth|secret|password|sig|signature)=)[^&#\s\"']+"
)
_BEARER_TOKEN = re.compile(r"(?i)(\bbearer\s+)(?=[A-Za-z0-9._~+/-]*\d)[A-Za-z0-9._~+/-]{16,}=*")
# what a server error may echo of the request's headers: "Authorization: Bearer xyz", "'authorization': 'xyz'",
# "api-key=xyz", a bare "Bearer xyz"
_HEADER_VALUE = re.compile(
    r"(?i)((?:authorization|api[-_]?key|x-api-key)[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?|bearer\s+)[^\s\"',;}]+"
)


def _is_key_run(run: str, digests_allowed: bool) -> bool:
    if digests_allowed and _DIGEST.fullmatch(run):
        return False
    return bool(re.search(r"\d", run) and re.search(r"[A-Za-z]", run))


def looks_like_key(text: str) -> bool:
    """Whether `text`, a value the user typed (a parameter, an argument, a config value), holds something that
    looks like a key; strict: a hex digest counts too, since no such value should hold one."""
    return redact(text, digests_allowed=False) != text


def environment_secrets() -> tuple[str, ...]:
    """The values of environment variables named like credentials (`*API_KEY*`, `*TOKEN*`, `*SECRET*`,
    `*PASSWORD*`), where keys live: exact values to remove wherever they turn up."""
    names = re.compile(r"(?i)api_?key|token|secret|password")
    return tuple(v for k, v in os.environ.items() if names.search(k) and len(v) >= 8 and not re.search(r"[\s/]", v))


def redact(
    text: str,
    secrets: tuple[str, ...] = (),
    headers: bool = False,
    marker: str = REDACTED,
    digests_allowed=True,
    content: bool = False,
) -> str:
    """`text` with each of `secrets` (exact values known to be keys) and everything that looks like a key (the
    module docstring) replaced by `marker`; with `headers`, every credential header value too. `content`: the text
    is data (training examples, generations, judge answers), where a long run of letters and digits is far more
    often a word, an identifier or an encoding than a key: only exact secrets and unambiguous key shapes
    (provider prefixes, URL passwords, credential query values, bearer tokens) are removed, so data is never
    rewritten by a guess."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, marker)
    if headers:
        text = _HEADER_VALUE.sub(lambda m: m.group(1) + marker, text)
    text = _PREFIXED.sub(marker, text)
    text = _URL_PASSWORD.sub(marker, text)
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + marker, text)
    text = _BEARER_TOKEN.sub(lambda m: m.group(1) + marker, text)
    if content:
        return text
    return _MIXED_RUN.sub(lambda m: marker if _is_key_run(m.group(), digests_allowed) else m.group(), text)


def redact_value(value: Any, content: bool = False, secrets: tuple[str, ...] | None = None) -> Any:
    """A JSON-like value (dicts, lists, tuples, strings: what a writer is given) with `redact` applied to every
    string in it, mapping keys included; anything else stays as it is (`files.write_json` redacts what its
    `default=str` makes of a Path or a timestamp). `content`: see `redact`; the environment's secrets are always
    removed."""
    secrets = environment_secrets() if secrets is None else secrets
    if isinstance(value, str):
        return redact(value, secrets, content=content)
    if isinstance(value, dict):
        return {
            redact_value(k, content, secrets) if isinstance(k, str) else k: redact_value(v, content, secrets)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_value(v, content, secrets) for v in value]
    return value


def redact_table(frame, secrets: tuple[str, ...] | None = None):
    """A pandas DataFrame with `redact` applied as `files.write_json` applies it: to every column name and to the
    text of every cell of a non-numeric column (a list or other object as it prints); a cell with nothing to remove
    is kept as it is, so a clean table writes the same CSV as before."""
    secrets = environment_secrets() if secrets is None else secrets

    def cell(value: Any) -> Any:
        text = value if isinstance(value, str) else str(value)
        out = redact(text, secrets)
        return value if out == text else out

    out = frame.rename(columns=lambda c: redact(c, secrets) if isinstance(c, str) else c)
    for i in range(frame.shape[1]):
        if frame.dtypes.iloc[i].kind == "O":  # object and pandas' string columns; numbers hold no key
            out.isetitem(i, frame.iloc[:, i].map(cell))
    return out
