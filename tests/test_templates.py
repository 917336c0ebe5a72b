"""The judge's templates: the default pairwise one asks the paper's question with its three options; stricter
criteria live in a named template set chosen by `judge.templates_dir`; a user folder still replaces by name."""

from __future__ import annotations

import pytest
from helpers import generation_rows

from lima_repro.config import ConfigError
from lima_repro.judging import protocols
from lima_repro.judging.items import build_requests


def test_default_pairwise_asks_which_answer_serves_the_asker_with_three_options():
    text = protocols.template_text("pairwise")
    assert "better satisfies that person's needs" in text and "far more than any human expert" in text
    options = [ln.split(" - ")[0] for ln in text.splitlines() if " - " in ln]
    assert options == list(protocols.get("pairwise").labels) == ["A", "B", "neither"]
    assert "length" not in text  # criteria the paper did not give are not in the default
    assert protocols.parse(protocols.get("pairwise"), "A is vaguer.\nVerdict: neither") == "neither"


def test_strict_set_is_named_and_falls_back_per_protocol(tmp_path):
    assert protocols.template_sets() == ["strict"]
    strict = protocols.template_text("pairwise", "strict")
    assert "length alone is not a merit" in strict and strict != protocols.template_text("pairwise")
    assert protocols.template_text("likert", "strict") == protocols.template_text("likert")
    default = build_requests(generation_rows(), "epoch-2", ["base"], ["pairwise"], {"m": 1})
    chosen = build_requests(generation_rows(), "epoch-2", ["base"], ["pairwise"], {"m": 1}, "strict")
    assert all("length alone is not a merit" in r.prompt for r in chosen)
    assert not {r.key for r in default} & {r.key for r in chosen}  # another template: judged (and cached) anew
    assert {r.answer_prefix for r in chosen} == {"Verdict:"} and {r.labels for r in chosen} == {("A", "B", "neither")}


def test_user_folder_replaces_by_name_and_unknown_names_are_refused(tmp_path):
    (tmp_path / "pairwise.txt").write_text("Q {{prompt}} A {{response_a}} B {{response_b}}")
    assert protocols.template_text("pairwise", tmp_path).startswith("Q {{prompt}}")
    assert protocols.template_text("absolute", tmp_path) == protocols.template_text("absolute")
    with pytest.raises(ConfigError, match=r"judge.templates_dir='strictest' is neither a folder nor a shipped"):
        protocols.template_text("pairwise", "strictest")


def test_absolute_grades_are_the_papers():
    """LIMA sec. 4 (docs/paper.md sec. 4): Fail = does not meet the prompt's requirements, Pass = meets them,
    Excellent = an excellent response; no "though it has flaws" or other criteria of our own."""
    text = protocols.template_text("absolute")
    assert "Fail - the answer does not meet the requirements of the request." in text
    assert "Pass - the answer meets the requirements of the request.\n" in text
    assert "Excellent - the answer meets the requirements of the request and is an excellent answer to it." in text
