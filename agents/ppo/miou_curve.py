"""Learning curves of PPO runs as the benchmark sees them: mIoU@k of each checkpoint against env steps.

The training log's return (:mod:`agents.ppo.curve`) is the *stochastic* policy's, at the training click budget;
what users get is the deterministic ``ppo:PATH`` agent under the benchmark's budget. :func:`checkpoint_curve`
benchmarks the start model and every ``checkpoints/ppo_<steps>_steps.zip`` of each run on the same samples
and seed, and :func:`plot_curve` draws mIoU@k against env steps (one panel per k, one line per run).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence


def checkpoints(run: str | Path) -> list[tuple[int, Path]]:
    """``(env steps, model .zip)`` of a training folder's checkpoints, sorted by steps. Each checkpoint gets
    the run's ``model.json`` copied beside it when it has none (what ``ppo:PATH`` loading needs)."""
    run = Path(run)
    out = []
    for p in (run / "checkpoints").glob("ppo_*_steps.zip"):
        settings = p.with_suffix(".json")
        if not settings.exists():
            shutil.copyfile(run / "model.json", settings)
        out.append((int(p.stem.split("_")[-2]), p))
    return sorted(out)


def checkpoint_curve(runs: dict[str, str | Path], start: str | Path | None, dataset: Any = "synthetic:val", *,
                     limit: int | None = 50, max_clicks: int = 10, seed: int = 0, cache: str | Path | None = None,
                     progress: bool = False) -> dict[str, list[dict[str, float]]]:
    """Benchmark ``start`` (step 0 of every run) and each run's checkpoints.

    Args:
        runs: label -> training folder (``hlmat train-ppo --out``).
        start: the model every run started from (``--init-from``), plotted at step 0; None for runs from
            scratch (their curves begin at the first checkpoint).
        dataset, limit, max_clicks, seed: as for :func:`agents.tools.benchmark.benchmark`.
        cache: a JSON file of finished points (model path -> metrics), read and extended, so an interrupted
            evaluation resumes.

    Returns:
        label -> one row per point: ``{"steps": ..., "miou@k": ..., ...}`` (the benchmark's metrics).
    """
    from agents.tools.benchmark import benchmark

    done = json.loads(Path(cache).read_text()) if cache and Path(cache).exists() else {}

    def metrics(path: Path) -> dict[str, float]:
        key = str(path)
        if key not in done:
            res = benchmark([f"ppo:{path}"], dataset, limit=limit, max_clicks=max_clicks, seed=seed,
                            progress=progress)
            done[key] = res.metrics[f"ppo:{path}"]
            if cache:
                Path(cache).write_text(json.dumps(done, indent=1) + "\n")
        return done[key]

    first = [{"steps": 0, **metrics(Path(start))}] if start is not None else []
    return {label: first + [{"steps": s, **metrics(p)} for s, p in checkpoints(run)] for label, run in runs.items()}


def plot_curve(curves: dict[str, list[dict[str, float]]], path: str | Path, ks: Sequence[int] = (1, 3, 5, 10),
               title: str = "") -> Path:
    """Draw mIoU@k (in %) against env steps, one panel per ``k``, one line per run; save a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [k for k in ks if any(f"miou@{k}" in r for rows in curves.values() for r in rows)]
    fig, axes = plt.subplots(1, len(ks), figsize=(3.2 * len(ks), 3.2), dpi=100, sharex=True)
    for ax, k in zip(list(axes) if len(ks) > 1 else [axes], ks):
        for label, rows in curves.items():
            ax.plot([r["steps"] for r in rows], [100 * r[f"miou@{k}"] for r in rows], marker=".", label=label)
        ax.set(title=f"mIoU@{k}", xlabel="PPO env steps")
        ax.grid(alpha=0.3)
    (axes[0] if len(ks) > 1 else axes).set_ylabel("mIoU (%)")
    (axes[-1] if len(ks) > 1 else axes).legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
