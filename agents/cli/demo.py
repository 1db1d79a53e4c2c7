"""``hlmat demo``: the oracle robot user over the embedded validation split, a table, a plot and a GIF."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hlmat demo`` and its flags."""
    p = sub.add_parser("demo", help="run the oracle robot user on the embedded set; write a table, plot and GIF",
                       description=__doc__)
    p.add_argument("--dataset", default="synthetic:val", help="dataset spec (default: synthetic:val)")
    p.add_argument("--segmenter", default="default", help="segmenter name (default: the weight-free default)")
    p.add_argument("--limit", type=int, default=None, help="first N samples only (default: all)")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--out", default="results/demo", help="results folder (default: results/demo)")


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat demo`` with the parsed ``args``; returns the exit code."""
    from pathlib import Path

    import gymnasium as gym

    import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)
    from agents.tools.benchmark import benchmark
    from agents.baselines.oracle import OracleAgent
    from agents.rollout import run_episode
    from hlmat_env.render import save_gif

    out = Path(args.out)
    result = benchmark(["oracle"], args.dataset, args.segmenter, limit=args.limit, max_clicks=args.max_clicks,
                       out=out)
    m = result.metrics["oracle"]
    clicks = sum(len(ep.clicks) for ep in result.episodes["oracle"])
    seconds = sum(sum(ep.step_seconds) for ep in result.episodes["oracle"])
    print(f"\nOracle robot user, {args.dataset}, segmenter {args.segmenter!r}, {m['n']:.0f} samples, "
          f"budget {args.max_clicks} clicks\n")
    print("| NoC@85 | NoC@90 | NoF@85 | NoF@90 | mIoU@1 | mIoU@3 | mIoU@5 | mIoU@10 | s/click |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {m['noc85']:.2f} | {m['noc90']:.2f} | {m['nof85']:.0f} | {m['nof90']:.0f} | "
          + " | ".join(f"{100 * m[f'miou@{k}']:.1f}" for k in (1, 3, 5, 10))
          + f" | {seconds / max(clicks, 1):.4f} |")
    env = gym.make("HLMATEnv-v0", dataset=args.dataset, segmenter=args.segmenter, max_clicks=args.max_clicks)
    episode = run_episode(env, OracleAgent(), index=0, seed=0, record_frames=True)
    gif = save_gif(episode.frames, out / "episode.gif", fps=env.metadata["render_fps"])
    print(f"\nwrote {out / 'results.md'}, {out / 'results.json'}, {out / 'per_sample.csv'}, "
          f"{out / 'curves.png'} (IoU vs clicks) and {gif} (one episode: {episode.caption!r})")
    return 0
