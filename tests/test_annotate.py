"""The annotator driven programmatically: clicks write labels at once; undo; a new object resumes."""
from __future__ import annotations

from lima_repro.annotate import Annotator, pairwise_items
from lima_repro.judging.labels import active_labels, pairwise_labels
from lima_repro.files import read_jsonl_plain
from helpers import generation_rows


def _items():
    return pairwise_items(generation_rows(), "epoch-2", "base")


def test_clicks_write_labels_and_resume(tmp_path):
    items = _items()
    ann = Annotator(items, tmp_path, "alice")
    w = ann.widget  # builds the ipywidgets
    assert ann.progress == (0, 4) and "0 / 4" in ann.header.value
    first = ann.current
    shown = ann.order(first)
    assert sorted(shown) == ["base", "epoch-2"]
    assert "Response 1" in ann.resp[0].value and "epoch-2" not in ann.resp[0].value  # blinded
    ann.grade_buttons[(1, "Excellent")].click()
    ann.buttons["1"].click()
    log = read_jsonl_plain(tmp_path / "alice.jsonl")  # on disk the moment it was given
    assert [e["kind"] for e in log] == ["absolute", "pairwise"]
    assert log[0]["system"] == shown[0] and log[1]["winner"] == shown[0]
    assert ann.progress == (1, 4) and ann.current["item_id"] == items[1]["item_id"]
    ann.buttons["neither"].click()
    ann.undo_button.click()  # withdraws the "neither" and goes back to item 2
    assert ann.progress == (1, 4) and ann.current["item_id"] == items[1]["item_id"]
    ann.keys.value = "2"  # keyboard shortcut
    assert ann.keys.value == "" and ann.progress == (2, 4)
    assert w is ann.widget

    again = Annotator(items, tmp_path, "alice")  # reopening (e.g. after a killed kernel) resumes
    assert again.progress == (2, 4) and again.current["item_id"] == items[2]["item_id"]
    assert again.order(items[0]) == shown  # same blind order every session
    labels = pairwise_labels(tmp_path)["alice"]
    assert labels[items[0]["item_id"]] == shown[0] and labels[items[1]["item_id"]] == ann.order(items[1])[1]


def test_several_annotators_and_no_widget_needed(tmp_path):
    items = _items()
    a, b = Annotator(items, tmp_path, "alice"), Annotator(items, tmp_path, "bob smith")
    for _ in items:
        a.choose("neither")
        b.key("0")
    b.undo()
    assert a.progress == (4, 4) and a.current is None and b.progress == (3, 4)
    assert (tmp_path / "bob_smith.jsonl").exists()
    labels = pairwise_labels(tmp_path)
    assert len(labels["alice"]) == 4 and len(labels["bob smith"]) == 3
    events = read_jsonl_plain(tmp_path / "bob_smith.jsonl")
    assert events[-1]["event"] == "undo" and len(active_labels(events)) == 3
    orders = {tuple(a.order(it)) for it in items} | {tuple(b.order(it)) for it in items}
    assert len(orders) == 2  # both display orders occur
