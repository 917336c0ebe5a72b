"""Human annotation in JupyterLab (LIMA sec. 4 protocols): an ipywidgets annotator.

    ann = Annotator.from_run(run_dir, annotator="alice")
    ann.widget          # display it in a notebook cell

Items are blinded: the two responses are shown as "Response 1" / "Response 2" in an order drawn per item from
the annotator's name and the item id (the same on every reopening). Buttons: 1 / 2 significantly better,
neither (the paper's three options), and Fail / Pass / Excellent for each response. Keyboard: click into the
shortcut box and type 1, 2 or 0 (neither); q/w/e grade response 1 Fail/Pass/Excellent, a/s/d response 2; u undoes.
Every label is one line appended to `<annotations_dir>/<annotator>.jsonl`, flushed and fsynced at once; undo is
an appended event too, so the file is a complete log. Each event has a random id, so two windows open under the
same name both keep their labels. Before each write a last line cut short (e.g. by a full disk) is moved to
`<annotator>.jsonl.torn` with a warning; a write that fails half-way is rolled back. Reopening replays the log and
resumes at the first unlabelled item. Several annotators each get their own file.
"""

from __future__ import annotations

import html
import random
import re
import time
from pathlib import Path

import ipywidgets as w

from .analysis import GRADES
from .files import append_jsonl, repair_tail
from .judging.items import pairs, resolve_system
from .judging.labels import active_labels, event_id, new_event_id, read_log
from .readers import read_generations
from .runs import RunDir

PAIRWISE = {
    "1": "Response 1 is significantly better",
    "2": "Response 2 is significantly better",
    "neither": "Neither is significantly better",
}
LABEL = "a label event"
KEYS = {
    "1": ("choose", "1"),
    "2": ("choose", "2"),
    "0": ("choose", "neither"),
    "n": ("choose", "neither"),
    "q": ("grade", 1, "Fail"),
    "w": ("grade", 1, "Pass"),
    "e": ("grade", 1, "Excellent"),
    "a": ("grade", 2, "Fail"),
    "s": ("grade", 2, "Pass"),
    "d": ("grade", 2, "Excellent"),
    "u": ("undo",),
}


def pairwise_items(rows: list[dict], system: str, baseline: str) -> list[dict]:
    """One item per (prompt, sample) that both systems answered; ids match the judge stage's pairwise items."""
    return [
        {
            "item_id": item,
            "messages": ours["messages"],
            "responses": {system: ours["response"], baseline: other["response"]},
        }
        for item, ours, other in pairs(rows, system, baseline)
    ]


class Annotator:
    def __init__(self, items: list[dict], annotations_dir: str | Path, annotator: str):
        if not annotator.strip():
            raise ValueError("give the annotator's name: each annotator has their own label file")
        self.items, self.name = items, annotator.strip()
        self.path = Path(annotations_dir) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.name)}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path, LABEL)
        self.events = read_log(self.path) if self.path.exists() else []
        self.pos = self._first_unlabelled()
        self._widget = None

    @classmethod
    def from_run(cls, run_dir: str | Path, annotator: str, system: str | None = None, baseline: str = "base"):
        run = RunDir(run_dir)
        rows = read_generations(run.generations)
        system = resolve_system(rows, system or "last")
        return cls(pairwise_items(rows, system, baseline), run.annotations, annotator)

    # ---- state ---------------------------------------------------------------------------------------------
    def order(self, item: dict) -> list[str]:
        """The systems in display order for this item: a blind, per-item shuffle, stable across sessions."""
        names = sorted(item["responses"])
        random.Random(f"{self.name}|{item['item_id']}").shuffle(names)
        return names

    def labels(self) -> list[dict]:
        return active_labels(self.events)

    def done_items(self) -> set[str]:
        return {e["item_id"] for e in self.labels() if e["kind"] == "pairwise"}

    def _first_unlabelled(self) -> int:
        done = self.done_items()
        return next((i for i, it in enumerate(self.items) if it["item_id"] not in done), len(self.items))

    @property
    def progress(self) -> tuple[int, int]:
        ids = {it["item_id"] for it in self.items}
        return len(self.done_items() & ids), len(self.items)

    @property
    def current(self) -> dict | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def _write(self, event: dict) -> dict:
        event = {"id": new_event_id(), "annotator": self.name, "time": time.time(), **event}
        repair_tail(self.path, LABEL)  # a write of this session that failed half-way is never appended onto
        append_jsonl(self.path, event)  # flushed and fsynced (rolled back if it fails) before anything else happens
        self.events.append(event)
        return event

    # ---- actions (the button handlers call these) ------------------------------------------------------------
    def choose(self, choice: str) -> None:
        """Pairwise label for the current item: '1', '2' or 'neither'; then the next unlabelled item."""
        item = self.current
        if item is None:
            return
        shown = self.order(item)
        winner = "neither" if choice == "neither" else shown[int(choice) - 1]
        self._write(
            {
                "event": "label",
                "kind": "pairwise",
                "item_id": item["item_id"],
                "choice": choice,
                "shown": shown,
                "winner": winner,
            }
        )
        self.pos = self._first_unlabelled()
        self.refresh()

    def grade(self, slot: int, label: str) -> None:
        """Absolute Fail / Pass / Excellent for the response shown at `slot` (1 or 2) of the current item."""
        item = self.current
        if item is None or label not in GRADES:
            return
        system = self.order(item)[slot - 1]
        self._write(
            {
                "event": "label",
                "kind": "absolute",
                "item_id": item["item_id"],
                "slot": slot,
                "system": system,
                "label": label,
            }
        )
        self.refresh()

    def undo(self) -> None:
        """Withdraw this annotator's last active label and go back to its item."""
        active = self.labels()
        if not active:
            return
        last = active[-1]
        self._write({"event": "undo", "target": event_id(last), "item_id": last["item_id"]})
        self.pos = next((i for i, it in enumerate(self.items) if it["item_id"] == last["item_id"]), self.pos)
        self.refresh()

    def key(self, k: str) -> None:
        """Keyboard shortcut (see the module docstring)."""
        action = KEYS.get(k.strip().lower()[-1:] if k.strip() else "")
        if action is None:
            return
        getattr(self, action[0])(*action[1:])

    # ---- widgets ---------------------------------------------------------------------------------------------
    @property
    def widget(self):
        if self._widget is None:
            self._build()
        return self._widget

    def _build(self) -> None:
        self.header = w.HTML()
        self.prompt_box = w.HTML()
        self.resp = [w.HTML(layout=w.Layout(width="50%", border="1px solid #ccc", padding="6px")) for _ in range(2)]
        self.buttons = {c: w.Button(description=d, layout=w.Layout(width="auto")) for c, d in PAIRWISE.items()}
        for c, b in self.buttons.items():
            b.on_click(lambda _b, c=c: self.choose(c))
        self.grade_buttons = {(s, g): w.Button(description=f"{s}: {g}") for s in (1, 2) for g in GRADES}
        for (s, g), b in self.grade_buttons.items():
            b.on_click(lambda _b, s=s, g=g: self.grade(s, g))
        self.undo_button = w.Button(description="Undo last label", button_style="warning")
        self.undo_button.on_click(lambda _b: self.undo())
        self.keys = w.Text(placeholder="shortcuts: 1 2 0 | q w e | a s d | u", continuous_update=True)
        self.keys.observe(self._on_key, names="value")
        self.progress_bar = w.IntProgress(min=0, max=max(1, len(self.items)))
        grades = [w.HBox([self.grade_buttons[(s, g)] for g in GRADES]) for s in (1, 2)]
        self._widget = w.VBox(
            [
                self.header,
                self.progress_bar,
                self.prompt_box,
                w.HBox(self.resp),
                w.HBox(grades),
                w.HBox(list(self.buttons.values()) + [self.undo_button]),
                self.keys,
            ]
        )
        self.refresh()

    def _on_key(self, change) -> None:
        if change["new"]:
            self.key(change["new"])
            self.keys.value = ""

    def refresh(self) -> None:
        if self._widget is None:
            return
        done, total = self.progress
        self.progress_bar.value = done
        item = self.current
        self.header.value = f"<b>{html.escape(self.name)}</b>: {done} / {total} labelled"
        if item is None:
            self.prompt_box.value = "<b>All items labelled. Thank you!</b> (Undo still works.)"
            for r in self.resp:
                r.value = ""
            return
        conv = "<br>".join(f"<b>{m['role']}</b>: {html.escape(m['content'])}" for m in item["messages"])
        self.prompt_box.value = f"<div style='white-space:pre-wrap'>{conv}</div>"
        grades = {
            e["slot"]: e["label"] for e in self.labels() if e["kind"] == "absolute" and e["item_id"] == item["item_id"]
        }
        for i, name in enumerate(self.order(item)):
            g = f" <i>[{grades[i + 1]}]</i>" if i + 1 in grades else ""
            self.resp[i].value = (
                f"<b>Response {i + 1}</b>{g}<div style='white-space:pre-wrap'>"
                f"{html.escape(item['responses'][name])}</div>"
            )
