"""``hlmat bench-env``: env steps per second in one env, sync and async vector envs and RLlib env runners."""
from __future__ import annotations

import argparse
import json
from typing import Any

DEFAULT_STEPS = 300


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat bench-env`` and its flags."""
    from agents.tools.env_speed import DEFAULT_DATASETS, DEFAULT_POLICIES, MODES, POLICIES

    p = subparsers.add_parser(
        "bench-env", help="env steps per second: one env, sync/async vector envs, RLlib env runners",
        description="Times a fixed number of HLMATEnv-v0 steps (after an untimed warm-up, episodes reset as "
                    "they end) for every dataset, policy and mode, and prints a markdown table of steps/s, "
                    "resets/s and each mode's ratio to one env measured in the same run. Env steps are "
                    "env.step transitions: gymnasium's NEXT_STEP autoreset steps count as resets. RLlib rows "
                    "run where ray.rllib imports (pip install 'hlmat[rllib]'); otherwise they say 'not run' "
                    "and why. Writes OUT/bench_env.md, OUT/bench_env.json and OUT/bench_env.png "
                    "with --out. Set OMP_NUM_THREADS=1 (the default when unset); other jobs on the machine "
                    "lower the ratios.")
    p.add_argument("--dataset", action="append", default=None, metavar="SPEC",
                   help="dataset spec, repeatable (default: " + " and ".join(DEFAULT_DATASETS)
                        + "; a relative folder is also looked up from the repository root, and an absent "
                          "one gives 'not run' rows)")
    p.add_argument("--policy", default=",".join(DEFAULT_POLICIES),
                   help=f"comma-separated policies among {', '.join(POLICIES)} (module: an untrained "
                        "agents.rllib ClickCNNModule samples the actions, in one env and RLlib env runners; "
                        "default: %(default)s)")
    p.add_argument("--modes", default=",".join(MODES),
                   help=f"comma-separated modes among {', '.join(MODES)} (default: %(default)s)")
    p.add_argument("--num-envs", type=int, default=2,
                   help="sub-envs of the vector envs and env runners of RLlib's second row (default: 2)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help="timed env steps per row (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed env steps before each timed run (default: max(num-envs, steps / 10))")
    p.add_argument("--max-clicks", type=int, default=20, help="the env's click budget (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resets and action spaces (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="also write bench_env.md, bench_env.json and bench_env.png there")
    return p


def _names(text: str, flag: str, allowed: tuple[str, ...]) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise SystemExit(f"{flag} takes comma-separated names among {', '.join(allowed)}, got {text!r}")
    return names


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat bench-env`` with the parsed ``args``; returns the exit code."""
    from pathlib import Path

    from agents.tools.env_speed import (DEFAULT_DATASETS, MODES, POLICIES, markdown_table, measure_env_speed,
                                        plot_speed, run_info)

    policies = _names(args.policy, "--policy", POLICIES)
    modes = _names(args.modes, "--modes", MODES)
    if args.num_envs < 1 or args.steps < 1 or args.max_clicks < 1:
        raise SystemExit(f"--num-envs, --steps and --max-clicks must be >= 1, got {args.num_envs}, "
                         f"{args.steps} and {args.max_clicks}")
    datasets = args.dataset or list(DEFAULT_DATASETS)
    info = run_info()
    rows = measure_env_speed(datasets, policies, modes, num_envs=args.num_envs, steps=args.steps,
                             seed=args.seed, progress=not args.no_progress, warmup=args.warmup,
                             env_kwargs={"max_clicks": args.max_clicks})
    info["load_avg_end"] = run_info()["load_avg"]
    table = markdown_table(rows, info)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_env.md").write_text(table + "\n")
        settings = {"datasets": datasets, "policies": policies, "modes": modes, "num_envs": args.num_envs,
                    "steps": args.steps, "warmup": args.warmup, "max_clicks": args.max_clicks,
                    "seed": args.seed}
        (out / "bench_env.json").write_text(json.dumps({"meta": {**info, "settings": settings}, "rows": rows},
                                                       indent=2) + "\n")
        plot_speed(rows, out / "bench_env.png")
        print(f"\nwrote {out / 'bench_env.md'}, {out / 'bench_env.json'} and {out / 'bench_env.png'}")
    return 0
