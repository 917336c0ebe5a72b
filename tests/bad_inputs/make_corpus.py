"""Write the malformed inputs of this corpus that are binary or awkward to keep as text (archives, zstd, bad
bytes). The plain-text cases are ordinary files beside this one; `python tests/bad_inputs/make_corpus.py`
rewrites the rest in place (the files are committed, so the tests do not need this script).

Cases too big to keep here (a 50 MB XML attribute, a 10 MB JSONL line) are written by the test at run time.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zlib
from pathlib import Path

import py7zr
import zstandard

HERE = Path(__file__).resolve().parent
SITE = "math.stackexchange.com"
# two rows of a valid Posts.xml: a question and its answer
POSTS = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<posts>\n'
    b'  <row Id="1" PostTypeId="1" Score="85" Body="&lt;p&gt;Why?&lt;/p&gt;" OwnerUserId="5" '
    b'Title="Why does the harmonic series diverge at all?" />\n'
    b'  <row Id="2" PostTypeId="2" ParentId="1" Score="42" Body="&lt;p&gt;Because.&lt;/p&gt;" OwnerUserId="6" />\n'
    b"</posts>\n"
)


def write(rel: str, data: bytes) -> None:
    path = HERE / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def seven_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as z:
        z.set_encoded_header_mode(False)  # a plain header, so crafted() can rename a member in place
        for name, data in members.items():
            z.writestr(data, name)
    return buf.getvalue()


def crafted(real_name: str, placeholder: str) -> bytes:
    """A .7z whose member is named `real_name`, which py7zr refuses to write (absolute, '..'): written under a
    placeholder of the same length, renamed in the header, and the header's CRCs recomputed."""
    blob = bytearray(seven_zip({placeholder: POSTS}))
    old, new = placeholder.encode("utf-16-le"), real_name.encode("utf-16-le")
    i = blob.index(old)
    blob[i : i + len(old)] = new
    offset, size = struct.unpack("<QQ", blob[12:28])
    blob[28:32] = struct.pack("<I", zlib.crc32(bytes(blob[32 + offset : 32 + offset + size])))
    blob[8:12] = struct.pack("<I", zlib.crc32(bytes(blob[12:32])))
    return bytes(blob)


def symlink_archive() -> bytes:
    """A .7z whose Posts.xml is a symbolic link to /etc/hostname."""
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "Posts.xml"
        os.symlink("/etc/hostname", link)
        buf = io.BytesIO()
        with py7zr.SevenZipFile(buf, "w") as z:
            z.write(link, arcname="Posts.xml")
        return buf.getvalue()


def zst(lines: list[bytes]) -> bytes:
    # with a checksum, as the Pushshift dumps: without one, flipped bytes can decode into garbage lines instead
    return zstandard.ZstdCompressor(level=19, write_checksum=True).compress(b"".join(x + b"\n" for x in lines))


def submission(**fields) -> bytes:
    row = {
        "id": "q1",
        "subreddit": "AskReddit",
        "title": "What is a small habit that improved your mornings?",
        "selftext": "",
        "score": 5400,
        "over_18": False,
    }
    row.update(fields)
    return json.dumps(row).encode()


def main() -> None:
    good = seven_zip({"Posts.xml": POSTS})
    se = "stackexchange"
    write(f"{se}/7z_truncated/{SITE}.7z", good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[40:90] = bytes(b ^ 0xFF for b in flipped[40:90])
    write(f"{se}/7z_corrupt_data/{SITE}.7z", bytes(flipped))
    write(f"{se}/7z_not_an_archive/{SITE}.7z", b"<html>404 Not Found</html>\n")
    write(f"{se}/7z_no_posts/{SITE}.7z", seven_zip({"Users.xml": b"<users />\n"}))
    write(f"{se}/7z_absolute_member/{SITE}.7z", crafted("/elsewhere/Posts.xml", "XelsewhereXPosts.xml"))
    write(f"{se}/7z_dotdot_member/{SITE}.7z", crafted("../../x/Posts.xml", "aa_aa_x_Posts.xml"))
    write(f"{se}/7z_symlink_member/{SITE}.7z", symlink_archive())
    huge = POSTS.replace(b'Body="&lt;p&gt;Because.&lt;/p&gt;"', b'Body="' + b"a" * 50_000_000 + b'"')
    write(f"{se}/7z_huge_attribute/{SITE}.7z", seven_zip({"Posts.xml": huge}))
    # a "7z bomb": 300 MiB of blanks in ~46 KB, over the 256 MiB floor of se_archive's cap (stops while written)
    write(f"{se}/7z_bomb/{SITE}.7z", seven_zip({"Posts.xml": b"<posts>\n" + b" " * (300 << 20)}))
    write(f"{se}/xml_not_utf8/{SITE}/Posts.xml", POSTS.replace(b"harmonic", b"harm\xf6nic"))

    rd = "reddit"
    blob = bytearray(zst([submission(id=f"q{i}", title=f"Question number {i} for you all?") for i in range(2000)]))
    mid = len(blob) // 2
    blob[mid : mid + 64] = bytes(b ^ 0xFF for b in blob[mid : mid + 64])
    write(f"{rd}/corrupt.zst", bytes(blob))
    write(f"{rd}/truncated.zst", zst([submission(id=f"q{i}") for i in range(500)])[:-50])
    write(f"{rd}/empty.zst", b"")
    write(f"{rd}/not_zstd.zst", b'{"id": "q1", "subreddit": "AskReddit"}\n')
    write(f"{rd}/huge_line.zst", zst([submission(selftext="x" * 6_000_000)]))
    # dirty rows a dump really has: each a counted skip, the good row still read
    write(
        f"{rd}/dirty_rows.zst",
        zst(
            [
                submission(id="a1", title=12345),
                submission(id="a2", title=None),
                submission(id="a3", selftext=7),
                submission(id=17, title="An integer id is not a Pushshift id, is it?"),
                submission(id="a5", score=1e999),
                submission(id="a6", score="lots"),
                b"{not json",
                b"\xff\xfe\xfd",
                b"[1, 2, 3]",
                submission(id="ok1", title="What is the best advice you ever got from a stranger?"),
            ]
        ),
    )

    write(
        "jsonl/not_utf8.jsonl",
        b'{"messages": [{"role": "user", "content": "caf\xe9?"}, {"role": "assistant", "content": "yes"}]}\n',
    )
    write("natinst/not_utf8/task001_bad.json", b'{"Definition": ["R\xe9sum\xe9"], "Instances": []}')
    write("wikihow/not_utf8.csv", b"title,text\nHow to Make Cr\xe8me Br\xfbl\xe9e,Whisk the cream.\n")
    write("baselines/not_utf8.json", b'[{"instruction": "caf\xe9", "output": "x"}]')
    write("config/not_utf8.yaml", b"train:\n  epochs: 2 # r\xe9sum\xe9\n")


if __name__ == "__main__":
    main()
