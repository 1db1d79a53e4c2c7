"""``hlmat star``: StaR+ round: corrected rollouts of a policy, the union with the demonstrations, retraining."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat star`` and its flags."""
    p = subparsers.add_parser(
        "star", help="StaR+: relabel a policy's rollouts with the robot user; write them and the union",
        description="Roll AGENT out on the dataset's samples, keep its IoU-raising clicks and replace the others "
                    "by the robot user's; write DIR/star.jsonl and DIR/union/ (the original demonstrations plus "
                    "star.jsonl). With --retrain bc (AGENT = ppo:PATH) also behaviour-clone a fresh policy of the "
                    "same architecture on the union into DIR/model.zip; --retrain finetune continues from AGENT's "
                    "weights instead (lower learning rate). --limit 0 gives the control: retraining on the "
                    "demonstrations only. For an MLLM policy, export DIR/union with hlmat export and fine-tune "
                    "from the base model on it.")
    p.add_argument("--agent", required=True, help="policy spec (ppo:PATH, mllm:PATH, ...)")
    p.add_argument("--agent-kwargs", default=None, metavar="JSON",
                   help='extra agent arguments per kind, as for benchmark: \'{"ppo": {"deterministic": false}}\'')
    p.add_argument("--dataset", default="synthetic:train", help="training samples (default: synthetic:train)")
    p.add_argument("--demos", required=True, help="original demonstrations (folder of *.jsonl or a JSONL file)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--segmenter", default="default", help="segmenter name (default: default)")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples")
    p.add_argument("--max-clicks", type=int, default=20, help="at most this many clicks (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    p.add_argument("--labels", choices=("policy", "robot"), default="policy",
                   help="policy: StaR+ (kept policy clicks are their own labels); robot: the same rollouts, every "
                        "visited state labelled with the robot user's click (DAgger-style; default: policy)")
    p.add_argument("--retrain", choices=("none", "bc", "finetune"), default="none",
                   help="retrain on the union: a fresh policy (bc) or AGENT's weights (finetune) (default: none)")
    p.add_argument("--bc-epochs", type=int, default=10, help="behaviour-cloning epochs (default: 10)")
    p.add_argument("--bc-lr", type=float, default=None,
                   help="peak learning rate (default: 3e-3 for bc, 3e-4 for finetune)")
    p.add_argument("--bc-demos", default=None,
                   help="extra demonstrations in train-ppo's demos.npz format, the file or its folder (e.g. the "
                        "policy's own training set), added to the union for retraining")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(coords=None)  # agent_kwargs_from_args reads benchmark's --coords shortcut too
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat star`` with the parsed ``args``; returns the exit code."""
    import json

    import torch

    from agents.base import make_agent
    from agents.cli.benchmark import agent_kwargs_from_args
    from agents.star import retrain, star_relabel
    from hlmat_env.trajectories import iter_trajectories, write_jsonl

    torch.set_num_threads(1)
    original = list(iter_trajectories(args.demos))
    kind, _, path = args.agent.partition(":")
    if args.retrain != "none" and kind != "ppo":
        raise SystemExit(f"--retrain {args.retrain} needs a ppo:PATH agent (its weights and configuration), "
                         f"got {args.agent!r}")
    agent = make_agent(args.agent, **agent_kwargs_from_args(args).get(kind, {}))
    trajs, stats = star_relabel(agent, args.dataset, segmenter=args.segmenter, limit=args.limit,
                                max_clicks=args.max_clicks, seed=args.seed, labels=args.labels,
                                progress=not args.no_progress)
    out = Path(args.out)
    write_jsonl(trajs, out / "star.jsonl")
    write_jsonl(original, out / "union" / "demos.jsonl")
    write_jsonl(trajs, out / "union" / "star.jsonl")
    relabelled = sum(s.label is not None for t in trajs for s in t.clicks)
    summary = {"labels": args.labels, "episodes": stats.episodes, "policy_clicks_kept": stats.kept,
               "replaced_by_robot_user": stats.replaced, "kept_clicks_relabelled": relabelled,
               "kept_fraction": stats.kept_fraction, "demonstrations": len(original),
               "union_episodes": len(original) + len(trajs)}
    (out / "star_stats.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"StaR+: {stats.episodes} episodes, {stats.kept} policy clicks kept, {stats.replaced} replaced by the "
          f"robot user; wrote {out / 'star.jsonl'} and {out / 'union'} ({summary['union_episodes']} episodes)")
    if args.retrain != "none":
        extra = None
        if args.bc_demos:
            extra = _load_bc_demos(Path(args.bc_demos), path)
        model = retrain(original + trajs, path or None, out, mode=args.retrain, epochs=args.bc_epochs,
                        lr=args.bc_lr, max_clicks=args.max_clicks, extra=extra, seed=args.seed,
                        progress=not args.no_progress)
        print(f"retrained ({args.retrain}) on the union: {model}")
    return 0


def _load_bc_demos(path: Path, model: str | None) -> dict:
    """``demos.npz`` (``path`` or ``path/demos.npz``), refused when its record's observation wrapper differs
    from the policy's (another caption code or size would not fit the network)."""
    import json

    import numpy as np

    from agents.ppo.agent import resolve_model
    from agents.ppo.bc import DEMO_FILE
    from agents.ppo.train import PPOConfig
    from agents.tools.settings_record import check_record

    path = path / DEMO_FILE if path.is_dir() else path
    if not path.is_file():
        raise SystemExit(f"--bc-demos: no demonstrations file {path}")
    record = path.with_suffix(".json")
    if record.is_file():  # the same check as train-ppo's reuse of a demos folder
        cfg = PPOConfig(**json.loads(resolve_model(model).with_suffix(".json").read_text()))
        check_record(record, {"wrapper": cfg.wrapper_kwargs()}, f"--bc-demos {path}", keys=("wrapper",))
    with np.load(path) as z:
        return dict(z)
