"""The training curve of a PPO run: mean episode return (= IoU gained over an episode) against env steps."""
from __future__ import annotations

import csv
from pathlib import Path


def read_progress(out: str | Path) -> list[tuple[float, float]]:
    """``(timesteps, ep_rew_mean)`` rows from every ``progress.csv`` under ``out`` (resumed runs included),
    sorted by timesteps."""
    rows = []
    for path in Path(out).rglob("progress.csv"):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                if r.get("rollout/ep_rew_mean") and r.get("time/total_timesteps"):
                    rows.append((float(r["time/total_timesteps"]), float(r["rollout/ep_rew_mean"])))
    return sorted(rows)


def plot_training_curve(out: str | Path) -> Path | None:
    """Save ``out/training_curve.png``; None (and no file) when no rollout was logged yet."""
    rows = read_progress(out)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot([r[0] for r in rows], [r[1] for r in rows], marker=".")
    ax.set(xlabel="environment steps", ylabel="mean episode return (IoU at the episode's end)",
           title="PPO training (stochastic policy)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out) / "training_curve.png"
    fig.savefig(path)
    plt.close(fig)
    return path
