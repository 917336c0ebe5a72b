"""Stack Exchange comment chains -> multi-turn dialogue CANDIDATES (LIMA sec. 1, dialogue part).

The paper adds 30 multi-turn chains: 10 written by the authors and 20 Stack Exchange comment chains that were
EDITED BY HAND into the assistant style. This module only builds the unedited candidates a person would then
edit: a question (user), its top answer (assistant), then the back-and-forth between the asker and the
answerer in the comments under that answer, alternating user/assistant.

Two streamed passes per site: `Posts.xml` keeps a bounded pool of the highest-scoring questions with their
current top answer and both authors (`se_dump.question_pool`, as the single-turn source); `Comments.xml` (`Id,
PostId, Score, Text, CreationDate, UserId?, UserDisplayName?`, plain text or mini-Markdown, no reply-to field)
keeps only the comments on those answers, grouped by PostId and ordered by (CreationDate, Id). Authors are
identified by UserId, else by display name; `@name` mentions are stripped from comment text. Every rule is a
counted step (`dlg.*`).
"""

from __future__ import annotations

import re
from pathlib import Path

from . import StepLog, make_example
from .se_dump import author, is_id, iter_rows, open_table, question_pool, site_name
from .text import html_to_markdown, strip_links

SOURCE = "multi_turn"
_MENTION = re.compile(r"(?<![\w@])@[\w.\-]+[:,]?\s*")


def open_comments(path: Path):
    """Open a site's Comments.xml from its folder (the name matched case-insensitively), a Posts.xml or
    Comments.xml path inside that folder, or a site's .7z archive (needs py7zr)."""
    if path.is_file() and path.suffix.lower() == ".xml" and path.name.lower() != "comments.xml":
        path = path.parent
    return open_table(path, "Comments.xml", "se_dialogue.dumps")


def clean_comment(text: str) -> str:
    """Comment mini-Markdown -> plain turn: `@name` mentions, links and URLs removed, whitespace collapsed."""
    t = _MENTION.sub("", text or "")
    t = strip_links(t)
    return " ".join(t.split())


def read_threads(path: Path, post_ids: set[str], log: StepLog) -> dict[str, list[dict]]:
    """Stream Comments.xml; return {PostId: comments ordered by (CreationDate, Id)} for `post_ids` only, so
    memory is bounded by the candidate pool, not by the file."""
    threads: dict[str, list[dict]] = {}
    with open_comments(path) as (fh, shown):
        for i, row in enumerate(iter_rows(fh, shown)):
            pid = row.get("PostId")
            if pid not in post_ids:
                continue
            cid = row.get("Id")
            if not is_id(cid):
                log.skip("se_dialogue: comment without a numeric Id", shown, f"row {i + 1}")
                continue
            threads.setdefault(pid, []).append(
                {
                    "id": int(cid),
                    "date": row.get("CreationDate") or "",
                    "text": row.get("Text") or "",
                    "author": author(row, "UserId", "UserDisplayName"),
                }
            )
    for comments in threads.values():
        comments.sort(key=lambda c: (c["date"], c["id"]))  # ISO timestamps sort as text
    return threads


def build_chain(q: dict, comments: list[dict], cfg, log: StepLog) -> list[dict] | None:
    """Question + top answer + asker/answerer comment thread -> alternating messages, or None (counted drop)."""
    ans = q["answer"]
    if not log.count("dlg.top_answer_score", ans is not None and ans["score"] >= cfg.min_answer_score):
        return None
    asker, answerer = q["asker"], ans["author"]
    if not log.count("dlg.asker_and_answerer_known_and_distinct", bool(asker and answerer and asker != answerer)):
        return None
    ours = [c for c in comments if c["author"] in (asker, answerer)]
    log.add("dlg.comment_by_asker_or_answerer", len(ours), len(comments) - len(ours))  # counts comments
    turns = [(c["author"], clean_comment(c["text"])) for c in ours]
    if not log.count("dlg.min_comment_chars", all(len(t) >= cfg.min_comment_chars for _, t in turns)):
        return None
    alternating = all(a == (asker if k % 2 == 0 else answerer) for k, (a, _) in enumerate(turns))
    if not log.count("dlg.alternating_authors", alternating):  # asker first, then answerer, asker, ...
        return None
    question = html_to_markdown(q["body"])
    prompt = f"{q['title'].strip()}\n\n{question}".strip() if question else q["title"].strip()
    texts = [prompt, html_to_markdown(ans["body"]), *(t for _, t in turns)]
    texts = texts[: cfg.max_turns]
    if len(texts) % 2:  # a conversation to train on ends with the assistant (answerer)
        texts = texts[:-1]
    if not log.count("dlg.min_turns", len(texts) >= cfg.min_turns and all(texts)):
        return None
    return [{"role": "user" if k % 2 == 0 else "assistant", "content": t} for k, t in enumerate(texts)]


def site_chains(dump: str | Path, cfg, log: StepLog) -> tuple[str, int, list[dict]]:
    """One site: (site name, number of questions, chain candidates by question score desc). The chains are
    UNEDITED candidates; the paper's 20 were edited by hand afterwards."""
    path = Path(dump)
    site = site_name(path)
    # one skip reason for both kinds of bad post, as this source has always counted them
    bad_post = "se_dialogue: post without a numeric Id or Score, or fabricated"
    n_questions, _, pool = question_pool(path, cfg.candidates_per_site, log, "se_dialogue.dumps", (bad_post, bad_post))
    threads = read_threads(path, {q["answer"]["id"] for q in pool if q["answer"] is not None}, log)
    out = []
    for q in pool:
        comments = threads.get(q["answer"]["id"], []) if q["answer"] else []
        msgs = build_chain(q, comments, cfg, log)
        if msgs is None:
            continue
        ex = make_example(
            f"se-dialogue-{site}-{q['id']}", SOURCE, "", None, ["multi_turn"], {"site": site, "score": q["score"]}
        )
        ex["messages"] = msgs
        out.append(ex)
    log.add("dlg.unedited_candidates (the paper edited its chains by hand)", len(out), 0)
    return site, n_questions, out
