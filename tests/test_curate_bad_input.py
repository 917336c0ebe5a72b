"""Bad raw input: a clear DataError naming file, position and fix, and never a partial output file."""

from __future__ import annotations

import json
import random

import pytest
import zstandard

from lima_repro.config import NatInstConfig, StackExchangeConfig, WikiHowConfig, load_config
from lima_repro.curate import run_curate
from lima_repro.data import DataError, resolve_path
from lima_repro.sources import StepLog, natinst, reddit, stackexchange, wikihow

POSTS = resolve_path("demo_raw:stackexchange/math.stackexchange.com/Posts.xml").read_bytes()


def se_folder(tmp_path, content: bytes, site="math.stackexchange.com"):
    folder = tmp_path / site
    folder.mkdir(parents=True)
    (folder / "Posts.xml").write_bytes(content)
    return folder


def read_se(folder):
    return stackexchange.site_candidates(folder, StackExchangeConfig(), StepLog(), random.Random(0))


def test_truncated_xml(tmp_path):
    folder = se_folder(tmp_path, POSTS[: len(POSTS) // 2])
    with pytest.raises(DataError) as e:
        read_se(folder)
    assert e.value.path.endswith("Posts.xml") and e.value.where.startswith("line ")
    assert "truncated" in e.value.reason or "XML error" in e.value.reason
    assert "re-download or re-extract" in e.value.fix


def test_non_utf8_xml(tmp_path):
    bad = POSTS.replace(b"harmonic series diverge", b"harmonic s\xe9ries diverge", 1)
    with pytest.raises(DataError, match=r"Posts.xml:line 3, column \d+: XML error"):
        read_se(se_folder(tmp_path, bad))


def test_empty_and_missing_posts(tmp_path):
    with pytest.raises(DataError, match="Posts.xml is empty"):
        read_se(se_folder(tmp_path, b""))
    (tmp_path / "empty_site").mkdir()
    with pytest.raises(DataError, match="no Posts.xml in this folder"):
        read_se(tmp_path / "empty_site")
    with pytest.raises(DataError, match="not found.*curate.stackexchange.dumps"):
        read_se(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "header,match",
    [
        ("headline,title", r"missing column\(s\) \['text'\]"),
        ("headline,heading,text", r"missing column\(s\) \['title'\]"),  # renamed
    ],
)
def test_csv_missing_or_renamed_column(tmp_path, header, match):
    f = tmp_path / "wikihowAll.csv"
    f.write_text(header + "\nx,y,z\n", encoding="utf-8")
    with pytest.raises(DataError, match=match) as e:
        wikihow.read_candidates(f, WikiHowConfig(), StepLog(), random.Random(0))
    assert e.value.where == "line 1" and "headline,title,text" in e.value.fix


def test_csv_bad_category_column_non_utf8_and_empty(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("title,text\nHow to X,Do it.\n", encoding="utf-8")
    with pytest.raises(DataError, match="no column 'cat'"):
        wikihow.read_candidates(f, WikiHowConfig(category_column="cat"), StepLog(), random.Random(0))
    f.write_bytes(b"title,text\nHow to Make Cr\xe8me Br\xfbl\xe9e,Whisk.\n")
    with pytest.raises(DataError, match="not valid UTF-8") as e:
        wikihow.read_candidates(f, WikiHowConfig(), StepLog(), random.Random(0))
    assert "iconv" in e.value.fix or "UTF-8" in e.value.fix
    f.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        wikihow.read_candidates(f, WikiHowConfig(), StepLog(), random.Random(0))


def _zst(rows: list[dict]) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(b"".join(json.dumps(r).encode() + b"\n" for r in rows))


def test_corrupt_and_truncated_zstd(tmp_path):
    rows = [{"id": str(i), "subreddit": "AskReddit", "title": f"Question number {i} for you?"} for i in range(3000)]
    blob = bytearray(_zst(rows))
    corrupt = tmp_path / "corrupt.zst"
    mid = len(blob) // 2
    blob[mid : mid + 64] = bytes(b ^ 0xFF for b in blob[mid : mid + 64])
    corrupt.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="corrupt zstd data") as e:
        list(reddit.iter_ndjson_zst(corrupt, StepLog()))
    assert e.value.where.startswith("compressed bytes") and "zstd -t" in e.value.fix
    cut = tmp_path / "cut.zst"
    cut.write_bytes(_zst(rows)[:-100])
    with pytest.raises(DataError, match="cut off"):
        list(reddit.iter_ndjson_zst(cut, StepLog()))
    empty = tmp_path / "empty.zst"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        list(reddit.iter_ndjson_zst(empty, StepLog()))


def test_dirty_ndjson_lines_are_counted_skips(tmp_path):
    f = tmp_path / "RS_2019-05.zst"
    good = json.dumps({"id": "a", "subreddit": "AskReddit", "title": "t"}).encode()
    f.write_bytes(zstandard.ZstdCompressor().compress(good + b"\n{oops\n\xff\xfe\n[1, 2]\n\n" + good + b"\n"))
    log = StepLog()
    assert [n for n, _ in reddit.iter_ndjson_zst(f, log)] == [1, 6]
    assert log.skips == {
        "reddit: line is not valid JSON": 1,
        "reddit: line is not valid UTF-8": 1,
        "reddit: line is not a JSON object": 1,
    }
    assert log.skip_examples[1] == {"reason": "reddit: line is not valid UTF-8", "file": str(f), "where": "line 3"}


def test_natural_instructions_bad_json(tmp_path):
    (tmp_path / "task001_x.json").write_text('{"Definition": ["x"],\n "Instances": [', encoding="utf-8")
    with pytest.raises(DataError, match=r"task001_x.json:line 2, column \d+: invalid JSON"):
        natinst.candidates(NatInstConfig(tasks=[str(tmp_path)]), StepLog(), random.Random(0))
    (tmp_path / "task001_x.json").write_text('{"Definition": ["x"]}', encoding="utf-8")
    log = StepLog()
    assert natinst.candidates(NatInstConfig(tasks=[str(tmp_path)]), log, random.Random(0)) == []
    assert log.skips == {"natinst: task file without an Instances list": 1}


def test_failed_curate_leaves_no_output_that_looks_complete(tmp_path):
    dump = se_folder(tmp_path / "raw", POSTS[:-200])
    cfg = load_config("demo", overrides={"curate.count_tokens": False, "curate.stackexchange.dumps": [str(dump)]})
    cfg.run_dir = str(tmp_path / "run")
    with pytest.raises(DataError, match="Posts.xml:line"):
        run_curate(cfg)
    out = tmp_path / "run" / "curate"
    assert not (out / "train.jsonl").exists() and not (out / "datacard.json").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    assert json.loads((out / "manifest.json").read_text())["status"].startswith("failed: DataError")
