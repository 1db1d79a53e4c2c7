"""Humans on the benchmark: recorded human sessions beside the robot user and agents on the same samples.

For each group of human episodes with the same dataset, segmenter and start state:

- **metrics**: the benchmark's (NoC@85/90, NoF, mIoU@k, cIoU, gIoU;
  :func:`agents.tools.benchmark.summarize_episodes`) for the humans (all sessions, then each session when there are several) and for each agent (``oracle`` is
  the robot user) run by :func:`agents.tools.benchmark.evaluate` on the distinct samples the humans annotated.
  ``s/click`` is the human's time from the sample shown (or the previous click) to the click; for an agent it is
  the compute time of a decision plus the env step;
- **clicks**: each human click against the robot user's click for the same state (the recorded mask before
  the click and the clicks before it): the distance in pixels (and in % of the image diagonal), whether the
  sign agrees, whether the click falls on an error pixel of its kind (positive on a missed object pixel,
  negative on a wrong background pixel), and whether it falls inside the *largest error region* (the largest
  8-connected component of pixels where the mask and the target differ). The robot user's own share inside
  the largest region is given for reference;
- **paired**: each agent's IoU at the click budget minus the humans' (their mean per sample), over the samples,
  with the paired bootstrap 95% interval of :func:`agents.tools.stats.paired_bootstrap` (two samples or more).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from agents.play.recording import read_human
from agents.rollout import Episode
from agents.tools.benchmark import MIOU_KS, evaluate, markdown_table, summarize_episodes
from agents.tools.stats import paired_bootstrap
from hlmat_env.errors import HLMATError
from hlmat_env.metrics import intersection_union, iou_after
from hlmat_env.robot_user import clicked_map, next_click
from hlmat_env.trajectories import Trajectory


@dataclass
class GroupReport:
    """The report of one (dataset, segmenter, start) group: metrics per row label and the click comparison."""

    dataset: str
    segmenter: str
    start: str
    samples: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    clicks: dict[str, float] = field(default_factory=dict)
    paired: dict[str, dict[str, float]] = field(default_factory=dict)

    def markdown(self) -> str:
        """The group as Markdown: a heading, the metrics table and the click comparison table."""
        head = f"## {self.dataset}, segmenter {self.segmenter}, start {self.start} ({self.samples} samples)\n\n"
        c = self.clicks
        rows = [("human clicks compared", f"{c['n']:.0f}"),
                ("distance to the robot user's click, mean / median (px)",
                 f"{c['dist_mean']:.1f} / {c['dist_median']:.1f}"),
                ("distance, mean (% of the image diagonal)", f"{100 * c['dist_diag_mean']:.1f}"),
                ("same sign as the robot user", _pct(c["same_sign"])),
                ("on an error pixel of its kind", _pct(c["on_error"])),
                ("inside the largest error region: human", _pct(c["in_largest_human"])),
                ("inside the largest error region: robot user", _pct(c["in_largest_robot"]))]
        table = "| human vs robot user | value |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)
        if self.paired:
            table += ("\n| agent minus humans, IoU at the budget (per sample) | mean | 95% interval |\n"
                      "|---|---|---|\n"
                      + "".join(f"| {k} | {100 * v['diff']:+.1f} | [{100 * v['lo']:+.1f}, {100 * v['hi']:+.1f}] |\n"
                                for k, v in self.paired.items()))
        return head + markdown_table(self.metrics) + "\n`s/step` = seconds per click.\n\n" + table


def _pct(v: float) -> str:
    return "nan" if math.isnan(v) else f"{100 * v:.1f}%"


def human_episode(traj: Trajectory, raw: dict[str, Any], target: np.ndarray) -> Episode:
    """A recorded human episode as an :class:`~agents.rollout.Episode` (IoUs, clicks, final intersection and
    union against ``target``, and the seconds each click took as ``step_seconds``)."""
    final = traj.mask_before(len(traj.clicks))
    inter, union = intersection_union(final, target)
    times = [float(c.get("t") or 0.0) for c in raw.get("clicks", [])]
    return Episode(traj.sample_id, traj.index, traj.caption, ious=[s.iou for s in traj.clicks],
                   clicks=[s.click for s in traj.clicks], start_iou=traj.start_iou, intersection=inter, union=union,
                   finished=bool(raw.get("finished", True)), step_seconds=list(np.diff([0.0] + times)))


def largest_error_region(target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Bool HxW: the largest 8-connected component of pixels where ``mask`` differs from ``target`` (ignore
    pixels, -1, excluded); all False when there is no error."""
    err = ((target > 0) != mask.astype(bool)) & (target >= 0)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(err.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(err)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def compare_clicks(pairs: Sequence[tuple[Trajectory, np.ndarray]]) -> dict[str, float]:
    """Human clicks against the robot user's for the same states (see the module docstring).

    Args:
        pairs: each human trajectory with its sample's target (int HxW, 1 object, 0 background, -1 ignore).

    Returns:
        ``n``, ``dist_mean``, ``dist_median`` (pixels), ``dist_diag_mean`` (fraction of the diagonal),
        ``same_sign``, ``on_error``, ``in_largest_human``, ``in_largest_robot`` (fractions of ``n``).
    """
    dist, diag, same, on_err, in_h, in_r = [], [], [], [], [], []
    for traj, target in pairs:
        gt, valid = target > 0, target >= 0
        for k, step in enumerate(traj.clicks):
            mask = traj.mask_before(k)
            robot = next_click(target, mask, clicked_map([s.click for s in traj.clicks[:k]], target.shape))
            if robot is None:  # nothing left to correct: no robot click to compare with
                continue
            largest = largest_error_region(target, mask)
            d = math.hypot(step.x - robot.x, step.y - robot.y)
            dist.append(d)
            diag.append(d / math.hypot(*target.shape))
            same.append(step.positive == robot.positive)
            kind = (gt & ~mask) if step.positive else (~gt & mask)
            on_err.append(bool(kind[step.y, step.x] and valid[step.y, step.x]))
            in_h.append(bool(largest[step.y, step.x]))
            in_r.append(bool(largest[robot.y, robot.x]))
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return {"n": float(len(dist)), "dist_mean": mean(dist),
            "dist_median": float(np.median(dist)) if dist else float("nan"),
            "dist_diag_mean": mean(diag), "same_sign": mean(same), "on_error": mean(on_err),
            "in_largest_human": mean(in_h), "in_largest_robot": mean(in_r)}


def play_report(recordings: str | Path, agents: Sequence[str] = ("oracle",), *, max_clicks: int = 20,
                seed: int = 0, out: str | Path | None = None, progress: bool = False) -> list[GroupReport]:
    """Humans beside the robot user and ``agents`` on the samples the humans annotated.

    Args:
        recordings: a folder of ``hlmat play`` recordings (or one file).
        agents: agent specs (:func:`agents.base.make_agent`) run on the same samples; ``oracle`` is the robot user.
        max_clicks: the click budget of the metrics.
        seed: the agents' base seed (as ``hlmat benchmark --seed``).
        out: when given, ``report.json`` and ``report.md`` are written there.
        progress: show the agents' progress bars.

    Returns:
        One :class:`GroupReport` per (dataset, segmenter, start) group, in the order first recorded.

    Raises:
        HLMATError: no human episode in ``recordings``.
    """
    import gymnasium as gym

    import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)
    from agents.base import make_agent

    records = read_human(recordings)
    if not records:
        raise HLMATError(f"no human episode in {recordings} (record some with `hlmat play --out DIR`)")
    groups: dict[tuple[str, str, str], list[tuple[Trajectory, dict]]] = defaultdict(list)
    for traj, raw in records:
        groups[(traj.dataset, traj.segmenter or "default", traj.start)].append((traj, raw))
    reports = []
    for (dataset, segmenter, start), items in groups.items():
        env = gym.make("HLMATEnv-v0", dataset=dataset, segmenter=segmenter, max_clicks=max_clicks, start=start)
        ds = env.unwrapped.dataset
        targets = {i: ds[i].target for i in sorted({t.index for t, _ in items})}
        rep = GroupReport(dataset, segmenter, start, len(targets))
        human = [human_episode(t, raw, targets[t.index]) for t, raw in items]
        sessions = sorted({raw.get("session_id", "?") for _, raw in items})
        rep.metrics[f"human ({len(sessions)} session(s))"] = summarize_episodes(human, max_clicks)
        if len(sessions) > 1:
            for s in sessions:
                eps = [ep for ep, (_, raw) in zip(human, items) if raw.get("session_id", "?") == s]
                rep.metrics[f"human:{s}"] = summarize_episodes(eps, max_clicks)
        per_sample: dict[int, list[float]] = defaultdict(list)  # the humans' IoU at the budget, per sample
        for ep in human:
            per_sample[ep.index].append(iou_after(ep.ious, max_clicks, ep.start_iou))
        for spec in agents:
            label = "oracle (robot user)" if spec == "oracle" else spec
            eps = evaluate(make_agent(spec), env, list(targets), seed=seed, progress=progress, desc=spec)
            rep.metrics[label] = summarize_episodes(eps, max_clicks)
            if len(eps) >= 2:
                a = np.array([np.mean(per_sample[ep.index]) for ep in eps])
                b = np.array([iou_after(ep.ious, max_clicks, ep.start_iou) for ep in eps])
                c = paired_bootstrap(a, b, seed=seed)
                rep.paired[label] = {"n": c.n, "diff": c.diff, "lo": c.lo, "hi": c.hi}
        rep.clicks = compare_clicks([(t, targets[t.index]) for t, _ in items])
        env.close()
        reports.append(rep)
    if out is not None:
        write_report(reports, out)
    return reports


def write_report(reports: Sequence[GroupReport], out: str | Path) -> Path:
    """Write ``report.json`` (every group's metrics and click comparison) and ``report.md`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = [{"dataset": r.dataset, "segmenter": r.segmenter, "start": r.start, "samples": r.samples,
            "metrics": r.metrics, "clicks": r.clicks, "paired": r.paired, "miou_ks": list(MIOU_KS)}
           for r in reports]
    (out / "report.json").write_text(json.dumps(doc, indent=2, allow_nan=True) + "\n")
    (out / "report.md").write_text("# Humans on the benchmark\n\n" + "\n".join(r.markdown() for r in reports))
    return out
