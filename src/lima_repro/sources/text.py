"""Text cleaning shared by the sources: Stack Exchange HTML -> Markdown, link/image removal, paper heuristics."""

from __future__ import annotations

import functools
import re
from html.parser import HTMLParser

_BLOCK = {"p", "div", "blockquote", "table", "tr", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "dl", "dt", "dd"}
_SKIP = {"script", "style"}


class _Markdown(HTMLParser):
    """HTML -> plain Markdown: code blocks fenced, inline code in backticks, lists as `-`/`1.` items;
    links keep their text but lose the URL; images and all other markup are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.pre = 0
        self.lists: list[list] = []  # stack of [tag, items so far]
        self.skip = 0

    def _tail(self) -> str:
        return "".join(self.out[-3:])

    def _ensure(self, newlines: int) -> None:
        if not self.out:
            return
        tail = self._tail()
        have = len(tail) - len(tail.rstrip("\n"))
        if have < newlines:
            self.out.append("\n" * (newlines - have))

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif tag == "pre":
            self._ensure(2)
            self.out.append("```\n")
            self.pre += 1
        elif tag == "code" and not self.pre:
            self.out.append("`")
        elif tag in ("ul", "ol"):
            self._ensure(1 if self.lists else 2)
            self.lists.append([tag, 0])
        elif tag == "li":
            self._ensure(1)
            kind = self.lists[-1] if self.lists else ["ul", 0]
            kind[1] += 1
            indent = "   " * max(len(self.lists) - 1, 0)
            self.out.append(indent + (f"{kind[1]}. " if kind[0] == "ol" else "- "))
        elif tag == "br":
            self.out.append("\n")
        elif tag in _BLOCK:
            if self._tail().endswith("> "):  # <blockquote><p>: the quote marker already opened the block
                return
            if self.lists:
                if not self._tail().endswith(("- ", ". ")):
                    self._ensure(1)
            else:
                self._ensure(2)
                if tag[0] == "h" and tag[1:].isdigit():
                    self.out.append("#" * int(tag[1:]) + " ")
                elif tag == "blockquote":
                    self.out.append("> ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(self.skip - 1, 0)
        elif tag == "pre" and self.pre:
            self.pre -= 1
            self._ensure(1)
            self.out.append("```")
            self._ensure(2)
        elif tag == "code" and not self.pre:
            self.out.append("`")
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            self._ensure(1 if self.lists else 2)
        elif tag in _BLOCK and not self.lists:
            self._ensure(2)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            self.out.append(data)
            return
        text = re.sub(r"\s+", " ", data)
        if not self.out or self._tail().endswith(("\n", " ")):
            text = text.lstrip()
        self.out.append(text)


def html_to_markdown(html: str) -> str:
    """Strip links, images and HTML, keeping code blocks and lists as Markdown (LIMA sec. 1, Stack Exchange)."""
    p = _Markdown()
    p.feed(html)
    p.close()
    text = "".join(p.out)
    lines, fence = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fence = not fence
        lines.append(line if fence else line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_HTML_TAG = re.compile(r"<\s*(img|a|/a)\b[^>]*>", re.I)
_URL = re.compile(r"\(?\bhttps?://\S+|\bwww\.\S+", re.I)


def strip_links(text: str) -> str:
    """Remove images and URLs from plain/Markdown text; a link keeps its text (wikiHow, Reddit)."""
    text = _MD_IMAGE.sub("", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _HTML_TAG.sub("", text)
    text = _URL.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", text)


_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
_FIRST_PERSON = re.compile(r"\bI\b|\bI'(?:m|ve|d|ll)\b|\b(?i:me|my|mine|myself)\b")


def prose(text: str) -> str:
    """Text without code blocks or inline code (heuristics must not fire on `my_var` or `I = 0`)."""
    return _CODE.sub(" ", text)


def first_person_count(text: str) -> int:
    """Occurrences of first-person singular pronouns outside code (LIMA sec. 1: drop first-person answers)."""
    return len(_FIRST_PERSON.findall(prose(text)))


def refers_to_others(text: str, phrases: list[str]) -> str | None:
    """The first phrase found that refers to other answers or to the site ("as mentioned", "stack exchange")."""
    m = _phrase_pattern(tuple(p.lower() for p in phrases)).search(" ".join(prose(text).lower().split()))
    return m.group(1) if m else None


@functools.lru_cache(maxsize=16)
def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern:
    alts = "|".join(re.escape(p) for p in phrases) or r"(?!x)x"
    return re.compile(rf"(?<!\w)({alts})(?!\w)")
