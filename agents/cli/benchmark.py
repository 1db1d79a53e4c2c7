"""``hlmat benchmark``: score agents over a dataset (NoC/NoF, mIoU@k, cIoU/gIoU, invalid rate, speed)."""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat benchmark`` and its flags."""
    p = subparsers.add_parser(
        "benchmark", help="run agents over a dataset and write results.json/.md, per_sample.csv, curves.png",
        description="Run each agent once on every sample (seeded) and write DIR/results.json, DIR/results.md, "
                    "DIR/per_sample.csv and DIR/curves.png. --start and --first-click set the protocol (recorded "
                    "in results.json and the table): on data without descriptions use --first-click robot or "
                    "--start box.")
    p.add_argument("--agent", required=True,
                   help="comma-separated agent specs: oracle, random, ppo[:PATH], mllm:PATH")
    p.add_argument("--dataset", default="synthetic:val", help="dataset spec (default: synthetic:val)")
    p.add_argument("--segmenter", default="default", help="segmenter name (default: default)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples")
    p.add_argument("--max-clicks", type=int, default=20, help="click budget per episode (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    p.add_argument("--start", choices=("empty", "box", "degraded"), default="empty",
                   help="protocol: the start state of every episode: empty mask, the target's box, or a degraded "
                        "target (default: empty)")
    p.add_argument("--first-click", choices=("agent", "robot"), default="agent",
                   help="protocol: robot = the robot user places click 1, then the agent continues (the classic "
                        "protocol, for data without descriptions); agent = the agent places every click "
                        "(default: agent)")
    p.add_argument("--obs-size", type=int, default=None, help="env observation size (default: the env's)")
    p.add_argument("--coords", default=None, help="coordinate codec of mllm agents (passed to the mllm agent)")
    p.add_argument("--agent-kwargs", default=None, metavar="JSON",
                   help='extra agent arguments per kind, as JSON: \'{"mllm": {"max_new_tokens": 32}}\'')
    p.add_argument("--prm", default=None, help="PRM for --stop/--search: 'default' (the shipped PRM), a "
                                              "checkpoint (hlmat train-prm), several comma-separated (their mean), "
                                              "'mllm', or 'policy' (a grounded ppo agent's own PRM head)")
    p.add_argument("--stop", choices=("none", "prm"), default="none",
                   help="prm: stop when the PRM estimate stops improving, answer the best-estimated step")
    p.add_argument("--search", type=int, default=1, metavar="K",
                   help="PRM-guided tree search with K candidates per step (default: 1 = off)")
    p.add_argument("--beam", type=int, default=1, help="beam width of the search (default: 1 = greedy)")
    p.add_argument("--patience", type=int, default=1, help="non-improving steps before the PRM stops (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def agent_kwargs_from_args(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Per-kind agent keyword arguments from ``--agent-kwargs`` and the shortcut flags (``--coords``)."""
    kwargs: dict[str, dict[str, Any]] = {}
    if args.agent_kwargs:
        try:
            kwargs = json.loads(args.agent_kwargs)
        except json.JSONDecodeError as e:
            raise SystemExit(f"--agent-kwargs is not valid JSON ({e}): {args.agent_kwargs!r}") from None
        if not isinstance(kwargs, dict) or not all(isinstance(v, dict) for v in kwargs.values()):
            raise SystemExit(f'--agent-kwargs must map agent kinds to dicts, e.g. {{"mllm": {{...}}}}, '
                             f"got {args.agent_kwargs!r}")
    if args.coords is not None:
        kwargs.setdefault("mllm", {})["coords"] = args.coords
    return kwargs


def agent_wrapper(args: argparse.Namespace) -> Callable | None:
    """The hook that wraps every agent (PRM stop signal, tree search) from flags; None when no flag asks."""
    if args.stop == "none" and args.search <= 1:
        return None
    if args.prm is None:
        raise SystemExit("--stop prm and --search K need --prm PATH (or --prm mllm)")
    from agents.prm.scorer import load_prm
    from agents.prm.search import TreeSearch
    from agents.prm.stop import PRMStop

    def wrap(agent):
        prm = load_prm(args.prm, agent=agent)
        if args.search > 1:
            return TreeSearch(agent, prm, k=args.search, beam=args.beam,
                              patience=args.patience if args.stop == "prm" else None, seed=args.seed)
        return PRMStop(agent, prm, patience=args.patience)

    return wrap


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat benchmark`` with the parsed ``args``; returns the exit code."""
    from agents.tools.benchmark import Protocol, benchmark

    specs = [s.strip() for s in args.agent.split(",") if s.strip()]
    if not specs:
        raise SystemExit(f"--agent needs at least one agent spec, got {args.agent!r}")
    env_kwargs = {} if args.obs_size is None else {"obs_size": args.obs_size}
    result = benchmark(specs, args.dataset, args.segmenter, limit=args.limit, max_clicks=args.max_clicks,
                       seed=args.seed, agent_kwargs=agent_kwargs_from_args(args), env_kwargs=env_kwargs,
                       wrap=agent_wrapper(args), progress=not args.no_progress, out=args.out,
                       protocol=Protocol(start=args.start, first_click=args.first_click))
    from agents.tools.benchmark import markdown_table

    print(markdown_table(result.metrics, result.protocol), end="")
    print(f"wrote {args.out}/results.json, results.md, per_sample.csv, curves.png")
    return 0
