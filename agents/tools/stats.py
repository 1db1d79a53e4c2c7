"""Paired comparisons of benchmark runs: the mean per-sample difference with a bootstrap confidence interval.

Two runs of the benchmark on the same samples (``per_sample.csv``) are compared sample by sample, so the
interval reflects how consistently one is better, not the spread of sample difficulty.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`paired_bootstrap` (``diff = mean(b) - mean(a)``, interval at ``level``)."""

    n: int
    mean_a: float
    mean_b: float
    diff: float
    lo: float
    hi: float
    level: float

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0."""
        return self.lo > 0 or self.hi < 0


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> Comparison:
    """Percentile bootstrap interval of ``mean(b - a)`` resampling the paired samples with replacement.

    Args:
        a, b: float ``(N,)`` per-sample values of the two runs, same sample order (N >= 2).
        n: bootstrap resamples.
        seed: seed of the resampling.
        level: confidence level of the interval.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two 1-D arrays of the same length >= 2, got shapes {a.shape} and {b.shape}")
    if not 0 < level < 1 or n < 1:
        raise ValueError(f"need 0 < level < 1 and n >= 1, got level={level}, n={n}")
    d = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    for start in range(0, n, 1000):  # chunks bound the memory to 1000 x N indices
        idx = rng.integers(0, len(d), size=(min(1000, n - start), len(d)))
        means[start:start + len(idx)] = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Comparison(len(d), float(a.mean()), float(b.mean()), float(d.mean()), float(lo), float(hi), level)


def read_per_sample(run: str | Path, agent: str | None = None, column: str = "final_iou") -> dict[str, float]:
    """``sample_id -> column`` of one agent of a benchmark run.

    Args:
        run: a benchmark output folder or its ``per_sample.csv``.
        agent: the agent label; may be omitted when the run has a single agent.
        column: a numeric column (``final_iou`` is the IoU at the click budget; ``iou@K``, ``noc90``...).
    """
    path = Path(run)
    path = path / "per_sample.csv" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no per_sample.csv at {path} (run `hlmat benchmark --out DIR` first)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    agents = sorted({r["agent"] for r in rows})
    if agent is None:
        if len(agents) != 1:
            raise ValueError(f"{path} holds agents {agents}: name one")
        agent = agents[0]
    rows = [r for r in rows if r["agent"] == agent]
    if not rows:
        raise ValueError(f"{path} has no rows for agent {agent!r} (agents: {agents})")
    if column not in rows[0]:
        raise ValueError(f"{path} has no column {column!r} (columns: {list(rows[0])})")
    return {r["sample_id"]: float(r[column]) for r in rows}


def compare_runs(run_a: str | Path, run_b: str | Path, *, agent_a: str | None = None, agent_b: str | None = None,
                 column: str = "final_iou", n: int = 10_000, seed: int = 0, level: float = 0.95) -> Comparison:
    """:func:`paired_bootstrap` of ``column`` between two benchmark runs, paired by sample id (the runs must
    cover the same samples)."""
    a = read_per_sample(run_a, agent_a, column)
    b = read_per_sample(run_b, agent_b, column)
    if set(a) != set(b):
        raise ValueError(f"{run_a} and {run_b} cover different samples ({len(a)} vs {len(b)}, "
                         f"{len(set(a) ^ set(b))} not shared)")
    ids = sorted(a)
    return paired_bootstrap(np.array([a[i] for i in ids]), np.array([b[i] for i in ids]), n=n, seed=seed,
                            level=level)
