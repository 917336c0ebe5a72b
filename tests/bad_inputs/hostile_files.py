"""Hostile data files (issue 24), generated: numbers Python will not read, text that is not text, files whose size
is the attack, and stage files cut short or of the wrong shape, for every stage that reads a file (curate, judge,
figures, alpaca-eval). `hostile.py` holds the config cases; this module the files.

`cases(folder)` writes each case's input under `folder/<case>/` (with None: names and arguments only) and returns
one `hostile.Case` per input; `tests/test_bad_inputs.py` runs each in its own process, bounded in time and address
space, and checks the one error line and that no file already in the case's run directory changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import zstandard
from bad_inputs.hostile import Case

BASE = Path(__file__).resolve().parent / "curate_base.yaml"
GOOD = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
GEN = {"prompt_id": "p1", "checkpoint": "epoch-1", "response": "Hello.", "messages": GOOD["messages"][:1]}
KEPT = "earlier/kept.json"  # a file each case's run directory holds before the command: it must not change
MiB = 1 << 20


def cases(folder: Path | None = None) -> list[Case]:
    write = folder is not None
    folder = folder or Path("unwritten")
    out: list[Case] = []

    def case(name: str, files: dict, argv: list[str], named: str) -> None:
        """`files`: path under the case folder -> bytes, or a function that writes that path (big files)."""
        here = folder / name
        if write:
            for rel, data in {KEPT: b'{"kept": true}\n', **files}.items():
                (here / rel).parent.mkdir(parents=True, exist_ok=True)
                data(here / rel) if callable(data) else (here / rel).write_bytes(data)
        out.append(Case(name, [a.replace("{case}", str(here)) for a in argv], named))

    def curate(name: str, key: str, rel: str, data, named: str) -> None:
        given = rel.split("/")[0]  # a file, or the site folder holding it
        sets = ["--set", f"{key}={json.dumps(['{case}/' + given])}"]
        case(
            name,
            {rel: data},
            ["curate", "--profile", "demo", "--config", str(BASE), "--run-dir", "{case}", *sets],
            named,
        )

    def judge(name: str, data: bytes, named: str) -> None:
        sets = ["--set", 'judge.generations_file="{case}/generations.jsonl"']
        case(name, {"generations.jsonl": data}, ["judge", "--profile", "demo", "--run-dir", "{case}", *sets], named)

    def lines(*rows) -> bytes:
        return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)

    # numbers: int() refuses 4,300+ digits (a ValueError); an id has no business past 30
    digits = "9" * 5000
    curate(
        "int_5000_digits",
        "curate.train_files",
        "t.jsonl",
        b'{"id": ' + digits.encode() + b', "messages": []}\n',
        "an integer of 5,000 digits",
    )
    # text: a lone surrogate escape is JSON, but no UTF-8 can hold it
    lone = b'{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "x"}]}\n'
    curate("lone_surrogate", "curate.train_files", "t.jsonl", lone, "t.jsonl:1: a lone UTF-16 surrogate")
    curate("lone_surrogate_test", "curate.test_files", "t.jsonl", lone.replace(b"assistant", b"user"), "surrogate")
    # size: a million blank lines before the bad one (streamed: not a list of a million strings), a 17 MB line
    curate("million_lines", "curate.train_files", "t.jsonl", b" \n" * 1_000_000 + b"[1]\n", "t.jsonl:1000001: expected")
    curate("line_17mb", "curate.train_files", "t.jsonl", b'{"a": "' + b"x" * (17 * MiB) + b'"}\n', "longer than 16 MiB")

    def newline_zst(path: Path) -> None:  # 256 MiB of newlines in ~8 KB (one read used to split into 2 GB), cut off
        path.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"\n" * (256 * MiB))[:-8])

    curate(
        "zst_256mib_of_newlines", "curate.askreddit.submissions", "RS.zst", newline_zst, "last zstd frame is cut off"
    )

    def posts(path: Path, middle: bytes, times: int, end: bytes = b"") -> None:
        with open(path, "wb") as fh:
            fh.write(b'<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
            for _ in range(times):
                fh.write(middle)
            fh.write(end)

    site = "math.stackexchange.com/Posts.xml"
    other = b'  <other Note="' + b"n" * 1000 + b'" />\n'  # 200 MB of elements that are not rows, then cut off
    curate(
        "xml_200mb_non_rows",
        "curate.stackexchange.dumps",
        site,
        lambda p: posts(p, other, 200 * MiB // len(other)),
        "file ends before the XML is closed",
    )
    attribute = b'  <row Id="1" PostTypeId="1" Score="5" Body="' + b"line\n" * (20 * MiB) + b'" />\n</posts>\n'
    curate(
        "xml_100mb_attribute_with_newlines",
        "curate.stackexchange.dumps",
        site,
        lambda p: posts(p, b"", 0, attribute),
        "an XML tag or text longer than 4 MiB",
    )
    # stage files a user hands the judge: each a different way not to be a generations file
    judge("gen_not_utf8", lines(GEN, b'{"prompt_id": "caf\xe9"}'), "generations.jsonl:2: not valid UTF-8")
    judge("gen_no_prompt_id", lines({k: v for k, v in GEN.items() if k != "prompt_id"}), ":1: `prompt_id` is missing")
    judge("gen_no_response", lines({k: v for k, v in GEN.items() if k != "response"}), "`response` is missing")
    judge("gen_no_checkpoint", lines({k: v for k, v in GEN.items() if k != "checkpoint"}), "`checkpoint` is missing")
    judge("gen_response_null", lines(GEN, {**GEN, "response": None}), ":2: `response` is a NoneType")
    judge("gen_messages_string", lines({**GEN, "messages": "Hi?"}), "`messages` is a str")
    judge("gen_list_line", lines(GEN, [GEN]), ":2: expected a JSON object, got list")
    judge("gen_lone_surrogate", lines({**GEN, "response": "\ud800"}), "a lone UTF-16 surrogate")
    judge("gen_int_5000_digits", lines(GEN, b'{"prompt_id": "p2", "sample": ' + digits.encode() + b"}"), "5,000 digits")
    # alpaca-eval export of a file that is not UTF-8
    case(
        "alpaca_not_utf8",
        {"g.jsonl": lines(GEN, b'{"response": "\xff"}')},
        ["alpaca-eval", "{case}/g.jsonl", "--generator", "m"],
        "g.jsonl:2: not valid UTF-8",
    )
    # figures: judge/results.json cut short, or a list
    for name, data in (("results_truncated", b'{"judge": "x", "likert": {"epo'), ("results_list", b"[1, 2]")):
        case(name, {"judge/results.json": data}, ["figures", "{case}", "--out", "{case}/figs"], "results.json")
    # figures: ablations/summary.json cut short, a list, or with rows that are not objects
    for name, data in (
        ("summary_truncated", b'{"conditions": [{"condition": "qual'),
        ("summary_list", b'[{"condition": "quality"}]'),
        ("summary_rows_not_objects", b'{"conditions": [1, "x"], "not_run": []}'),
    ):
        case(name, {"ablations/summary.json": data}, ["figures", "{case}", "--out", "{case}/figs"], "summary.json")
    return out
