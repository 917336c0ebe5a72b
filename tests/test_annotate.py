"""The annotator driven programmatically: clicks write labels at once; undo; a new object resumes."""

from __future__ import annotations

import pytest
from helpers import generation_rows

from lima_repro.annotate import Annotator, pairwise_items
from lima_repro.files import read_jsonl_plain
from lima_repro.judging.labels import active_labels, pairwise_labels


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


def test_two_windows_under_one_name_keep_every_label(tmp_path):
    items = _items()
    first, second = Annotator(items, tmp_path, "alice"), Annotator(items, tmp_path, "alice")  # two browser tabs
    first.choose("1")  # item 0
    second.pos = 1
    second.choose("2")  # item 1, written by the other window
    first.pos = 2
    first.choose("neither")
    second.undo()  # withdraws the second window's own label only
    second.pos = 3
    second.choose("1")
    labels = pairwise_labels(tmp_path)["alice"]
    assert sorted(labels) == sorted(items[i]["item_id"] for i in (0, 2, 3))
    assert labels[items[2]["item_id"]] == "neither" and labels[items[0]["item_id"]] == first.order(items[0])[0]
    reopened = Annotator(items, tmp_path, "alice")
    assert reopened.progress == (3, 4) and reopened.current["item_id"] == items[1]["item_id"]
    events = read_jsonl_plain(tmp_path / "alice.jsonl")
    assert len({e["id"] for e in events}) == len(events) == 5


def test_a_torn_last_line_is_skipped_with_a_warning_and_repaired_before_appending(tmp_path):
    items = _items()
    ann = Annotator(items, tmp_path, "alice")
    ann.choose("1")
    ann.choose("2")
    log = tmp_path / "alice.jsonl"
    with open(log, "ab") as fh:  # the disk filled up in the middle of the third label
        fh.write('{"id": "x", "event": "label", "kind": "pairwise", "item_id": "é'.encode()[:-1])
    with pytest.warns(UserWarning, match=r"alice.jsonl:3: skipped a label event cut short"):
        labels = pairwise_labels(tmp_path)["alice"]  # the judge stage's reader
    assert len(labels) == 2
    with pytest.warns(UserWarning, match="moved a label event cut short"):
        again = Annotator(items, tmp_path, "alice")
    assert again.progress == (2, 4)
    again.choose("neither")
    assert [e["item_id"] for e in read_jsonl_plain(log)] == [it["item_id"] for it in items[:3]]
    assert len(pairwise_labels(tmp_path)["alice"]) == 3


def test_a_complete_last_line_without_newline_is_kept_and_a_bad_middle_line_is_an_error(tmp_path):
    from lima_repro.data import DataError
    from lima_repro.judging.labels import read_log

    items = _items()
    Annotator(items, tmp_path, "bob").choose("1")
    log = tmp_path / "bob.jsonl"
    log.write_bytes(log.read_bytes().rstrip(b"\n"))  # the newline was the part that did not make it
    again = Annotator(items, tmp_path, "bob")
    assert again.progress == (1, 4)
    again.choose("2")
    assert len(read_jsonl_plain(log)) == 2
    log.write_text("not json\n" + log.read_text())
    with pytest.raises(DataError, match=r"bob.jsonl:line 1: not a label event"):
        read_log(log)


@pytest.mark.parametrize(
    "event,missing",
    [
        ('{"id": "a", "event": "label", "kind": "pairwise", "annotator": "bob", "item_id": "i"}', "winner"),
        ('{"id": "a", "event": "label", "annotator": "bob", "item_id": "i", "winner": "x"}', "kind"),
        ('{"event": "label", "kind": "absolute", "item_id": "i", "system": "s", "label": "Pass"}', "id"),
        ('{"id": "b", "event": "undo", "item_id": "i"}', "target"),
    ],
)
def test_an_event_without_the_fields_its_type_needs_is_an_error(tmp_path, event, missing):
    from lima_repro.data import DataError

    (tmp_path / "bob.jsonl").write_text(event + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"bob.jsonl:line 1: a `\w+` event without {missing}\. Fix: repair"):
        pairwise_labels(tmp_path)


def test_a_write_torn_in_this_session_is_moved_aside_before_the_next(tmp_path):
    items = _items()
    ann = Annotator(items, tmp_path, "alice")
    ann.choose("1")
    log = tmp_path / "alice.jsonl"
    with open(log, "ab") as fh:  # the disk filled up in the middle of a label of this same session
        fh.write(b'{"id": "x", "event": "lab')
    with pytest.warns(UserWarning, match="moved a label event cut short"):
        ann.choose("2")
    assert [e["item_id"] for e in read_jsonl_plain(log)] == [it["item_id"] for it in items[:2]]
    assert (tmp_path / "alice.jsonl.torn").read_bytes() == b'{"id": "x", "event": "lab\n'
