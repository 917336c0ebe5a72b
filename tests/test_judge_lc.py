"""Length-controlled win rate on cases computed by hand, and its columns in results.json / pairwise.csv."""

from __future__ import annotations

import csv
import json
import math

import pytest
from helpers import ScriptJudge, generation_rows

from lima_repro import analysis as an
from lima_repro.config import Config, JudgeConfig
from lima_repro.files import write_jsonl
from lima_repro.judge import run_judge


def test_length_controlled_by_hand():
    # lengths 19 vs 9 chars -> x = log2(20/10) = +1; 9 vs 19 -> x = -1
    longer = [("win", 19, 9)] * 3 + [("loss", 19, 9)]  # 3 of 4 wins when ours is twice as long
    shorter = [("win", 9, 19), ("loss", 9, 19)]  # 1 of 2 when ours is half as long
    res = an.length_controlled(longer + shorter + [("invalid", 5, 5)], band=1.5)
    # two groups, two parameters: the fit is exact, a + b = logit(3/4) = ln 3 and a - b = logit(1/2) = 0,
    # so a = b = ln(3)/2 and the win rate at equal lengths is sigmoid(ln(3)/2) = sqrt(3)/(1 + sqrt(3)) = 63.40%
    assert res["n"] == 6 and res["pref_pct"] == pytest.approx(400 / 6)
    assert res["lc_win_pct"] == pytest.approx(100 * math.sqrt(3) / (1 + math.sqrt(3)), abs=1e-3)
    assert res["length_slope"] == pytest.approx(math.log(3) / 2, abs=1e-4)
    assert res["band_n"] == 0 and res["band_win_pct"] is None  # every pair is 2x apart: none within 1.5x


def test_length_controlled_equal_lengths_ties_and_band():
    # equal lengths: the regression has nothing to correct, lc = plain preference (tie = half): (2 + 0.5) / 4
    res = an.length_controlled([("win", 10, 10), ("win", 10, 10), ("tie", 10, 10), ("loss", 10, 10)])
    assert res["lc_win_pct"] == pytest.approx(62.5, abs=1e-6) and res["pref_pct"] == 62.5
    assert res["band_n"] == 4 and (res["band_win_pct"], res["band_tie_pct"], res["band_loss_pct"]) == (50, 25, 25)
    # band 1.5: 11/9 (1.2x) is in, 29/9 (3x) is out
    res = an.length_controlled([("win", 29, 9), ("loss", 10, 8), ("win", 14, 11)], band=1.5)
    assert res["band_n"] == 2 and res["band_win_pct"] == 50.0
    # a judge that always prefers the longer answer: perfectly separated, still finite; at equal length ~50%
    res = an.length_controlled([("win", 39, 9), ("loss", 9, 39)] * 3)
    assert res["length_slope"] > 2 and res["lc_win_pct"] == pytest.approx(50.0, abs=1e-6)
    assert an.length_controlled([("invalid", 1, 2)])["lc_win_pct"] is None


def test_length_control_in_results_and_csv(tmp_path):
    cfg = Config(run_dir=str(tmp_path / "run"))
    write_jsonl(tmp_path / "run" / "generate" / "generations.jsonl", generation_rows())
    cfg.judge = JudgeConfig(token_shift=False, n_bootstrap=50, protocols=["pairwise"])
    out = run_judge(cfg, judge=ScriptJudge())
    lc = json.loads((out / "results.json").read_text())["length_controlled"]["base"]
    # the script judge prefers the longer answer and ours is always longer: 100% raw, all pairs outside the band
    assert lc["n"] == 4 and lc["pref_pct"] == 100.0 and lc["band_n"] == 0
    with open(out / "pairwise.csv") as fh:
        row = next(csv.DictReader(fh))
    assert {"lc_win_pct", "lc_pref_pct", "lc_length_slope", "lc_band_n", "lc_band_win_pct"} <= set(row)
    cfg.judge.length_control = False
    out = run_judge(cfg, judge=ScriptJudge())
    assert "length_controlled" not in json.loads((out / "results.json").read_text())
    with open(out / "pairwise.csv") as fh:
        assert "lc_win_pct" not in next(csv.DictReader(fh))
