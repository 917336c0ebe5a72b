"""Throughput and peak memory of the Stack Exchange reader + filters on large synthetic Posts.xml files.

    python benchmarks/curate_stream.py                  # 100 MB and 1 GB
    python benchmarks/curate_stream.py --sizes 100 300  # sizes in MB

Each size is generated once (streamed to disk, in --dir), then read in a fresh subprocess so its peak RSS
(ru_maxrss) belongs to the reader alone. Peak memory should stay flat as the file grows: the reader clears
parsed rows and keeps only `candidates_per_site` questions.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

WORDS = (
    "the of a to and in is for that with as on be it by this are or an can from at which use value function "
    "data file set number time system point case example code line order result error type user"
).split()


def _para(rng: random.Random, n_words: int) -> str:
    return "<p>" + " ".join(rng.choice(WORDS) for _ in range(n_words)) + ".</p>"


def generate(path: Path, size_mb: float, seed: int = 0) -> None:
    """Write a Posts.xml of about size_mb megabytes: questions each followed by 1-3 answers."""
    rng = random.Random(seed)
    target = int(size_mb * 1e6)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write('<?xml version="1.0" encoding="utf-8"?>\r\n<posts>\r\n')
        written, pid = 0, 1
        while written < target:
            q = pid
            title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))).capitalize() + "?"
            rows = [
                f'  <row Id="{q}" PostTypeId="1" Score="{rng.randint(-2, 300)}" Title={quoteattr(title)} '
                f'Body={quoteattr(_para(rng, rng.randint(20, 120)))} Tags="&lt;x&gt;" '
                'CreationDate="2021-03-14T09:26:53.590" ContentLicense="CC BY-SA 4.0" />'
            ]
            for _ in range(rng.randint(1, 3)):
                pid += 1
                body = "".join(_para(rng, rng.randint(20, 90)) for _ in range(rng.randint(1, 8)))
                if rng.random() < 0.3:
                    body += (
                        "<pre><code>for i in range(10):\n    print(i)\n</code></pre><ul><li>one</li><li>two</li></ul>"
                    )
                rows.append(
                    f'  <row Id="{pid}" PostTypeId="2" ParentId="{q}" Score="{rng.randint(0, 120)}" '
                    f'Body={quoteattr(body)} CreationDate="2021-03-14T09:26:53.590" />'
                )
            pid += 1
            chunk = "\r\n".join(rows) + "\r\n"
            fh.write(chunk)
            written += len(chunk)
        fh.write("</posts>\r\n")


def read(path: Path) -> dict:
    from lima_repro.config import StackExchangeConfig
    from lima_repro.sources import StepLog
    from lima_repro.sources.stackexchange import site_candidates

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    log = StepLog()
    t0 = time.perf_counter()
    _, n_q, cands = site_candidates(path, StackExchangeConfig(), log, random.Random(0), name="math")
    dt = time.perf_counter() - t0
    mb = path.stat().st_size / 1e6
    return {
        "size_mb": round(mb, 1),
        "seconds": round(dt, 2),
        "mb_per_s": round(mb / dt, 1),
        "questions": n_q,
        "kept": len(cands),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_imports_mb": round(base / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[100, 1000], help="file sizes in MB")
    ap.add_argument("--dir", default=None, help="where to write the synthetic files (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--read", default=None, help=argparse.SUPPRESS)  # child mode: read one file, print JSON
    args = ap.parse_args()
    if args.read:
        print(json.dumps(read(Path(args.read))))
        return
    folder = Path(args.dir or tempfile.mkdtemp(prefix="lima-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{'size MB':>8} {'s':>7} {'MB/s':>6} {'questions':>10} {'kept':>5} {'peak RSS MB':>12}")
    for size in args.sizes:
        path = folder / f"Posts-{int(size)}MB.xml"
        if not path.exists():
            generate(path, size)
        out = subprocess.run(
            [sys.executable, __file__, "--read", str(path)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['size_mb']:>8} {r['seconds']:>7} {r['mb_per_s']:>6} {r['questions']:>10} {r['kept']:>5} "
            f"{r['peak_rss_mb']:>12}  (after imports: {r['rss_after_imports_mb']} MB)",
            flush=True,
        )
        if not args.keep:
            path.unlink()


if __name__ == "__main__":
    main()
