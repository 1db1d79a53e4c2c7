"""Paired bootstrap and ``hlmat compare``: intervals cover a known shift and pair samples by id."""
from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest

from agents.tools.stats import compare_runs, paired_bootstrap


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 200)
    c = paired_bootstrap(a, a + 0.05 + rng.normal(0, 0.02, 200), n=2000)
    assert c.lo < 0.05 < c.hi and c.lo > 0 and c.significant and c.diff == pytest.approx(0.05, abs=0.01)
    same = paired_bootstrap(a, a + rng.normal(0, 0.05, 200), n=2000)
    assert same.lo < 0 < same.hi and not same.significant
    assert paired_bootstrap(a, a[::-1], seed=1) == paired_bootstrap(a, a[::-1], seed=1)
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap(a, a[:-1])


def _run(path, agent, values):
    path.mkdir()
    with open(path / "per_sample.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["agent", "index", "sample_id", "final_iou"])
        for i, v in values.items():
            w.writerow([agent, i, f"s{i}", v])
    return path


def test_compare_runs_pairs_by_sample_id(tmp_path, capsys):
    from agents.cli import compare

    a = _run(tmp_path / "a", "x", {0: 0.2, 1: 0.5, 2: 0.9})
    b = _run(tmp_path / "b", "y", {2: 1.0, 0: 0.3, 1: 0.6})  # other row order, same samples
    c = compare_runs(a, b, n=500)
    assert c.diff == pytest.approx(0.1) and c.lo == pytest.approx(0.1) and c.hi == pytest.approx(0.1)
    args = argparse.Namespace(base=str(a), runs=[f"{b}#y"], column="final_iou", n=500, level=0.95, seed=0)
    assert compare.run(args) == 0
    assert "+10.00" in capsys.readouterr().out
    with pytest.raises(ValueError, match="different samples"):
        compare_runs(a, _run(tmp_path / "c", "y", {0: 0.1, 1: 0.1}))
    with pytest.raises(ValueError, match="no rows for agent"):
        compare_runs(a, b, agent_b="z")
