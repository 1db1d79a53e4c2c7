"""Benchmark runs of agent policies: every sample of a dataset once, seeded, scored the way the field does.

Per agent: NoC@85/90, NoF@85/90, mIoU@1/3/5/7/10/20 (an episode that stopped early keeps its last mask),
cIoU and gIoU at the click budget, the invalid-output rate and the seconds per step. Outputs in ``out``:
``results.json`` (``{agent: {metric: value}}``), ``results.md`` (a table), ``per_sample.csv`` and
``curves.png`` (mean IoU against the number of clicks, a curve per agent).

A :class:`Protocol` says how each episode starts: from an empty mask, the target's box or a degraded target
(``start``), and whether the robot user places the first click before the agent takes over
(``first_click="robot"``, the classic interactive-segmentation protocol; that click is click 1). It is
recorded in ``results.json`` (its ``"protocol"`` entry) and in the header of the table.

The per-agent runner :func:`evaluate` is reusable on its own, and :func:`benchmark` takes a ``wrap`` hook
(``Agent -> Agent``) applied to every agent it builds (e.g. a PRM stop signal or a tree search).
"""
from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from agents.base import Agent, make_agent
from agents.rollout import Episode, run_episode
from hlmat_env.metrics import ciou, giou, iou_after, noc_at, summarize

METRICS = ("noc85", "noc90", "nof85", "nof90", "miou@1", "miou@3", "miou@5", "miou@7", "miou@10", "miou@20",
           "ciou", "giou", "invalid_rate", "sec_per_step")
MIOU_KS = (1, 3, 5, 7, 10, 20)
STARTS = ("empty", "box", "degraded")
"""Start states of a benchmark protocol (the env's ``start``)."""
FIRST_CLICKS = ("agent", "robot")
"""Who places click 1: the agent, or the robot user (then the agent continues)."""


@dataclass(frozen=True)
class Protocol:
    """How every episode of a benchmark run starts.

    Attributes:
        start: the env's start state: ``"empty"`` (no mask), ``"box"`` (the target's bounding box, also given to
            the segmenter as a prompt) or ``"degraded"`` (a randomly damaged target, seeded per sample).
        first_click: ``"agent"`` (the agent places every click) or ``"robot"`` (the harness places the robot
            user's first click through the env, counted as click 1; the agent continues from there, without
            access to the robot user).

    Raises:
        ValueError: a value outside :data:`STARTS` / :data:`FIRST_CLICKS`.
    """

    start: str = "empty"
    first_click: str = "agent"

    def __post_init__(self) -> None:
        if not isinstance(self.start, str) or self.start not in STARTS:
            raise ValueError(f"protocol start must be one of {list(STARTS)}, got {self.start!r}")
        if not isinstance(self.first_click, str) or self.first_click not in FIRST_CLICKS:
            raise ValueError(f"protocol first_click must be one of {list(FIRST_CLICKS)}, got {self.first_click!r}")

    @classmethod
    def parse(cls, value: "Protocol | Mapping[str, str] | None") -> "Protocol":
        """A :class:`Protocol` from itself, a mapping with the keys ``start`` / ``first_click``, or None (the
        default: empty start, the agent clicks first).

        Args:
            value: the protocol, a mapping of its fields, or None.

        Returns:
            The protocol.

        Raises:
            ValueError: an unknown key or value.
            TypeError: another type.
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"start", "first_click"}
            if unknown:
                raise ValueError(f"unknown protocol keys {sorted(map(str, unknown))}; allowed: start, first_click")
            return cls(**dict(value))
        raise TypeError(f"protocol must be a Protocol, a dict with start/first_click or None, "
                        f"got {type(value).__name__}: {value!r}")

    @property
    def robot_clicks(self) -> int:
        """Number of robot-user clicks the harness places before the agent acts (0 or 1)."""
        return 1 if self.first_click == "robot" else 0

    def describe(self) -> str:
        """A short label, e.g. ``"start box, first click robot"``."""
        return f"start {self.start}, first click {self.first_click}"


def episode_seed(seed: int, index: int) -> int:
    """The env/agent seed of sample ``index`` in a run seeded ``seed`` (per sample, so ``--limit`` and the
    sample order do not change any episode)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def evaluate(agent: Agent, env: Any, indices: Sequence[int], *, seed: int = 0, progress: bool = True,
             desc: str | None = None, first_click: str = "agent") -> list[Episode]:
    """Run ``agent`` once on each sample ``indices`` of ``env`` (a Gymnasium env, wrapped or not).

    Each episode resets the env with ``seed=episode_seed(seed, index)``; an agent with its own generator in
    an ``rng`` attribute (e.g. the random agent) gets a fresh one from the same seed, so every episode is
    reproducible on its own.

    Args:
        agent: the agent.
        env: the env; its start state is the env's own (``start`` kwarg).
        indices: dataset indices, run in this order.
        seed: the run's base seed.
        progress: show a progress bar.
        desc: the progress bar's label (default: the agent's name).
        first_click: ``"robot"``: the robot user places click 1, then the agent continues (see :class:`Protocol`).

    Returns:
        One :class:`~agents.rollout.Episode` per index, in order.

    Raises:
        ValueError: ``first_click`` is not one of :data:`FIRST_CLICKS`.
    """
    robot_clicks = Protocol(first_click=first_click).robot_clicks
    episodes = []
    for index in tqdm(list(indices), desc=desc or getattr(agent, "name", "agent"), disable=not progress,
                      unit="sample"):
        s = episode_seed(seed, int(index))
        if isinstance(getattr(agent, "rng", None), np.random.Generator):
            agent.rng = np.random.default_rng(s)
        episodes.append(run_episode(env, agent, index=int(index), seed=s, robot_clicks=robot_clicks))
    return episodes


def summarize_episodes(episodes: Sequence[Episode], max_clicks: int = 20) -> dict[str, float]:
    """The benchmark's metrics (:data:`METRICS`, plus ``n``) over ``episodes`` run with budget ``max_clicks``.

    ``ciou``/``giou`` use the final mask (at the budget, or where the episode stopped); ``invalid_rate`` is
    invalid outputs over all decisions; ``sec_per_step`` the mean wall time of a decision plus env step.
    """
    curves = [ep.ious for ep in episodes]
    out = summarize(curves, max_clicks=max_clicks, ks=MIOU_KS, initial=[ep.start_iou for ep in episodes])
    out["ciou"] = ciou([ep.intersection for ep in episodes], [ep.union for ep in episodes])
    out["giou"] = giou([iou_after(ep.ious, max_clicks, ep.start_iou) for ep in episodes])
    steps = sum(len(ep.step_seconds) for ep in episodes)
    out["invalid_rate"] = sum(ep.invalid for ep in episodes) / steps if steps else 0.0
    out["sec_per_step"] = sum(sum(ep.step_seconds) for ep in episodes) / steps if steps else float("nan")
    return {k: out[k] for k in ("n", *METRICS)}


@dataclass
class BenchmarkResult:
    """Episodes and metrics of every agent (keys: the agent specs, in the order given), and the protocol."""

    episodes: dict[str, list[Episode]]
    metrics: dict[str, dict[str, float]]
    max_clicks: int
    protocol: Protocol = field(default_factory=Protocol)


def benchmark(
    agent_specs: Sequence[str | Agent],
    dataset: Any = "synthetic:val",
    segmenter: Any = "default",
    *,
    limit: int | None = None,
    max_clicks: int = 20,
    seed: int = 0,
    agent_kwargs: dict[str, dict[str, Any]] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    wrap: Callable[[Agent], Agent] | None = None,
    progress: bool = True,
    out: str | Path | None = None,
    protocol: Protocol | Mapping[str, str] | None = None,
) -> BenchmarkResult:
    """Run every agent over the first ``limit`` samples (all when None) of ``dataset``.

    Args:
        agent_specs: agent specs for :func:`agents.base.make_agent` (``"oracle"``, ``"ppo:PATH"``...) or agents.
        dataset: as for ``gym.make("HLMATEnv-v0", dataset=...)`` (a spec string or an object).
        segmenter: as for ``gym.make("HLMATEnv-v0", segmenter=...)``.
        limit: only the first ``limit`` samples.
        max_clicks: the click budget (a robot user's first click counts in it).
        seed: the run's base seed (:func:`episode_seed`).
        agent_kwargs: extra keyword arguments per agent kind, e.g. ``{"mllm": {"coords": "qwen"}}``.
        env_kwargs: further ``HLMATEnv`` arguments (``obs_size``...). A ``start`` here is the protocol's
            start when ``protocol`` is None.
        wrap: applied to each built agent (hook for PRM stopping / tree search).
        progress: show progress bars.
        out: when given, :func:`write_results` writes the result files there.
        protocol: the :class:`Protocol` (or a dict ``{"start": ..., "first_click": ...}``); None: empty
            start, the agent clicks first.

    Returns:
        The :class:`BenchmarkResult`.

    Raises:
        ValueError: an invalid protocol, a ``start`` in ``env_kwargs`` that contradicts it, an agent listed
            twice, or ``limit < 1``.
    """
    import gymnasium as gym

    import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)

    env_kwargs = dict(env_kwargs or {})
    if protocol is None and "start" in env_kwargs:
        protocol = {"start": env_kwargs["start"]}
    protocol = Protocol.parse(protocol)
    if env_kwargs.setdefault("start", protocol.start) != protocol.start:
        raise ValueError(f"env_kwargs start={env_kwargs['start']!r} contradicts the protocol's "
                         f"start={protocol.start!r}")
    env = gym.make("HLMATEnv-v0", dataset=dataset, segmenter=segmenter, max_clicks=max_clicks, **env_kwargs)
    n = len(env.unwrapped.dataset)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    indices = range(n if limit is None else min(n, limit))
    episodes: dict[str, list[Episode]] = {}
    metrics: dict[str, dict[str, float]] = {}
    for spec in agent_specs:
        label = spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)
        if label in episodes:
            raise ValueError(f"agent {label!r} is listed twice")
        if label == "protocol":
            raise ValueError("an agent cannot be labelled 'protocol' (results.json's protocol entry)")
        kind = label.partition(":")[0]
        agent = make_agent(spec, **dict((agent_kwargs or {}).get(kind, {})))
        if wrap is not None:
            agent = wrap(agent)
        episodes[label] = evaluate(agent, env, indices, seed=seed, progress=progress, desc=label,
                                   first_click=protocol.first_click)
        metrics[label] = summarize_episodes(episodes[label], max_clicks)
    env.close()
    result = BenchmarkResult(episodes, metrics, max_clicks, protocol)
    if out is not None:
        write_results(result, out)
    return result


def write_results(result: BenchmarkResult, out: str | Path) -> Path:
    """Write ``results.json``, ``results.md``, ``per_sample.csv`` and ``curves.png`` into ``out``.

    ``results.json`` is ``{"protocol": {"start", "first_click", "max_clicks"}, agent: {metric: value}, ...}``.

    Args:
        result: the benchmark's result.
        out: the folder (created).

    Returns:
        ``out`` as a path.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"protocol": {**asdict(result.protocol), "max_clicks": result.max_clicks}, **result.metrics}
    (out / "results.json").write_text(json.dumps(record, indent=2, allow_nan=True) + "\n")
    (out / "results.md").write_text(markdown_table(result.metrics, result.protocol))
    _write_csv(result, out / "per_sample.csv")
    plot_curves(result, out / "curves.png")
    return out


def markdown_table(metrics: dict[str, dict[str, float]], protocol: Protocol | None = None) -> str:
    """A markdown table, one row per agent: NoC/NoF, mIoU@k, cIoU, gIoU as percentages, rates, seconds.

    Args:
        metrics: ``{agent: {metric: value}}`` (:func:`summarize_episodes`).
        protocol: when given, named in the first header cell: ``agent (start box, first click robot)``.

    Returns:
        The table, one line per row.
    """
    head = ["agent" if protocol is None else f"agent ({protocol.describe()})", "n", "NoC@85", "NoC@90", "NoF@85", "NoF@90"] + [f"mIoU@{k}" for k in MIOU_KS] + [
        "cIoU", "gIoU", "invalid", "s/step"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in metrics.items():
        cells = [name, f"{m['n']:.0f}", f"{m['noc85']:.2f}", f"{m['noc90']:.2f}", f"{m['nof85']:.0f}",
                 f"{m['nof90']:.0f}"] + [_pct(m[f"miou@{k}"]) for k in MIOU_KS] + [
                 _pct(m["ciou"]), _pct(m["giou"]), _pct(m["invalid_rate"]), f"{m['sec_per_step']:.4f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _pct(v: float) -> str:
    return "nan" if math.isnan(v) else f"{100 * v:.1f}"


def _write_csv(result: BenchmarkResult, path: Path) -> None:
    k_max = result.max_clicks
    fields = ["agent", "index", "sample_id", "caption", "start_iou", "num_clicks", "finished", "invalid",
              "invalid_reasons", "final_iou", "noc85", "noc90"] + [f"iou@{k}" for k in range(1, k_max + 1)]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for agent, eps in result.episodes.items():
            for ep in eps:
                w.writerow([agent, ep.index, ep.sample_id, ep.caption, f"{ep.start_iou:.6f}", len(ep.clicks),
                            int(ep.finished), ep.invalid, "; ".join(ep.invalid_reasons),
                            f"{iou_after(ep.ious, k_max, ep.start_iou):.6f}", noc_at(ep.ious, 0.85, k_max),
                            noc_at(ep.ious, 0.90, k_max)]
                           + [f"{iou_after(ep.ious, k, ep.start_iou):.6f}" for k in range(1, k_max + 1)])


def mean_curve(episodes: Sequence[Episode], max_clicks: int) -> np.ndarray:
    """Mean IoU after ``k = 0..max_clicks`` clicks, float64 ``(max_clicks + 1,)`` (early stops keep their mask)."""
    return np.array([np.mean([iou_after(ep.ious, k, ep.start_iou) for ep in episodes]) if episodes else np.nan
                     for k in range(max_clicks + 1)])


def plot_curves(result: BenchmarkResult, path: str | Path) -> Path:
    """Save the IoU-vs-clicks plot (a curve per agent, dotted lines at IoU 0.85 and 0.90)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ks = np.arange(result.max_clicks + 1)
    for name, eps in result.episodes.items():
        ax.plot(ks, mean_curve(eps, result.max_clicks), marker="o", markersize=3, label=name)
    for thr in (0.85, 0.90):
        ax.axhline(thr, color="grey", linestyle=":", linewidth=0.8)
    ax.set(xlabel="number of clicks", ylabel="mean IoU", ylim=(0, 1), xlim=(0, result.max_clicks),
           title="IoU vs clicks")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
