"""Segmenter benchmark: the standard robot-user protocol run with several segmenters over one dataset.

Protocol (RITM / SimpleClick): per sample, ``set_image`` once, then up to ``max_clicks`` clicks; each click is
the robot user's (:func:`hlmat_env.robot_user.next_click`, already-clicked pixels excluded) for the current
prediction; the segmenter receives all clicks so far and its previous prediction. An episode stops early when
no error pixel is left (the last mask is kept for the later clicks). Metrics come from
:mod:`hlmat_env.metrics`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from hlmat_env.actions import Click
from hlmat_env.datasets import Sample
from hlmat_env.metrics import iou, summarize
from hlmat_env.robot_user import clicked_map, next_click
from hlmat_env.segmenters import Prediction, Segmenter

MIOU_KS = (1, 3, 5, 10, 20)


@dataclass
class EpisodeResult:
    """One sample's run: ``ious[k-1]`` is the IoU after k clicks, ``click_seconds[k-1]`` the seconds that
    predict k took."""

    sample_id: str
    ious: list[float] = field(default_factory=list)
    click_seconds: list[float] = field(default_factory=list)
    set_image_seconds: float = 0.0


def run_episode(segmenter: Segmenter, sample: Sample, max_clicks: int = 20) -> EpisodeResult:
    """Robot user + ``segmenter`` on one sample (the target is seen only by the robot user and the metric)."""
    t0 = time.perf_counter()
    segmenter.set_image(sample.image)
    result = EpisodeResult(sample.sample_id, set_image_seconds=time.perf_counter() - t0)
    pred = np.zeros(sample.target.shape, bool)
    prev: Prediction | None = None
    clicks: list[Click] = []
    for _ in range(max_clicks):
        click = next_click(sample.target, pred, clicked_map(clicks, sample.target.shape))
        if click is None:
            break
        clicks.append(click)
        t0 = time.perf_counter()
        prev = segmenter.predict(list(clicks), prev)
        result.click_seconds.append(time.perf_counter() - t0)
        pred = prev.mask
        result.ious.append(iou(pred, sample.target))
    return result


def summarize_runs(runs: Sequence[EpisodeResult], max_clicks: int = 20) -> dict[str, float]:
    """NoC/NoF@85/90, mIoU@1/3/5/10/20, seconds per click (median, p90) and median ``set_image`` seconds."""
    out = summarize([r.ious for r in runs], max_clicks, ks=MIOU_KS)
    times = [t for r in runs for t in r.click_seconds]
    out["sec_per_click_median"] = float(np.median(times)) if times else float("nan")
    out["sec_per_click_p90"] = float(np.percentile(times, 90)) if times else float("nan")
    sets = [r.set_image_seconds for r in runs]
    out["set_image_sec_median"] = float(np.median(sets)) if sets else float("nan")
    out["clicks"] = float(len(times))
    return out


def mean_curve(runs: Sequence[EpisodeResult], max_clicks: int = 20) -> list[float]:
    """Mean IoU after k = 1..max_clicks clicks (an episode that stopped early keeps its last IoU)."""
    ks = range(1, max_clicks + 1)
    curves = [[r.ious[min(k, len(r.ious)) - 1] if r.ious else 0.0 for k in ks] for r in runs]
    return [float(v) for v in np.mean(curves, axis=0)] if curves else []


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of :func:`summarize_runs` outputs (a row per segmenter), ratios against the first."""
    names = list(results)
    ref = results[names[0]]["summary"] if names else {}
    cols = ["NoC@85", "NoC@90", "NoF@85", "NoF@90"] + [f"mIoU@{k}" for k in MIOU_KS]
    cols += ["s/click median", "s/click p90", "set_image s", "s/click ratio", "NoC@90 ratio"]
    lines = ["| segmenter | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in names:
        s = results[name]["summary"]
        cells = [f"{s['noc85']:.2f}", f"{s['noc90']:.2f}", f"{s['nof85']:.0f}", f"{s['nof90']:.0f}"]
        cells += [f"{s[f'miou@{k}']:.3f}" for k in MIOU_KS]
        cells += [f"{s['sec_per_click_median']:.4f}", f"{s['sec_per_click_p90']:.4f}",
                  f"{s['set_image_sec_median']:.4f}",
                  f"{s['sec_per_click_median'] / ref['sec_per_click_median']:.2f}",
                  f"{s['noc90'] / ref['noc90']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(results: dict[str, dict[str, Any]], path: str) -> None:
    """Mean IoU vs clicks, one curve per segmenter, saved as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, res in results.items():
        curve = res["mean_iou_curve"]
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=name)
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean IoU")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sets(sets: dict[str, dict[str, dict[str, Any]]], path: str) -> None:
    """Mean IoU vs clicks for several datasets (``{spec: {segmenter: result}}``), one panel per dataset and one
    curve per segmenter, saved as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 4), squeeze=False)
    for ax, (spec, results) in zip(axes[0], sets.items()):
        for name, res in results.items():
            curve = res["mean_iou_curve"]
            ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=name)
        ax.set_title(spec.rstrip("/").split("/")[-1], fontsize=10)
        ax.set_xlabel("clicks")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean IoU")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
