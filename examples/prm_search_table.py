"""The PRM goal table: a sampling policy at the click budget alone (K=1), with the PRM stop signal, and with
PRM-guided K-candidate search, each against K=1 with a paired bootstrap 95% interval.

    python examples/prm_search_table.py --prm runs/prm --limit 100 --max-clicks 7 --out runs/prm_table
    python examples/prm_search_table.py --prm runs/prm --policy ppo:runs/bc --out runs/prm_table_bc

``--policy noisy`` (default) is a stand-in for an imperfect learned policy: the robot user's click moved by
Gaussian noise (``--sigma`` px) or, with probability ``--p-random``, a uniformly random pixel, with the
sensible sign. It reads the robot user (hence the target) and is NOT a deployable agent; the PRM, the stop
signal and the search it is wrapped in never see the target. Any other value is an agent spec, sampled
stochastically (``ppo:PATH`` with ``deterministic=False``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from agents.tools.benchmark import benchmark
from agents.base import Agent
from agents.baselines.random_agent import RandomAgent


class NoisyRobotUser(RandomAgent):
    """The robot user's click with noise (see the module docstring), with the random agent's sign rule."""

    name = "noisy-robot-user"

    def __init__(self, sigma: float = 10.0, p_random: float = 0.2, seed: int = 0):
        super().__init__(seed)
        self.sigma, self.p_random = sigma, p_random

    def position(self, env: Any, rng: np.random.Generator) -> tuple[int, int]:
        expert = env.expert_click()
        h, w = env.mask.shape
        if expert is None or rng.random() < self.p_random:
            return super().position(env, rng)
        return (int(np.clip(round(expert.x + rng.normal(0, self.sigma)), 0, w - 1)),
                int(np.clip(round(expert.y + rng.normal(0, self.sigma)), 0, h - 1)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prm", required=True, help="PRM checkpoint (hlmat train-prm)")
    p.add_argument("--policy", default="noisy", help="'noisy' or an agent spec (sampled), e.g. ppo:runs/bc")
    p.add_argument("--dataset", default="synthetic:val")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--max-clicks", type=int, default=7, help="click budget (SegAgent's: 7)")
    p.add_argument("--k", type=int, default=3, help="candidates per step of the search")
    p.add_argument("--beam", type=int, default=0, help="also run beam search of this width (0: skip)")
    p.add_argument("--patience", type=int, default=1, help="PRM stop patience")
    p.add_argument("--sigma", type=float, default=10.0)
    p.add_argument("--p-random", type=float, default=0.2)
    p.add_argument("--variants", default=None,
                   help="comma-separated subset to run (k1, stop, search_kK, beamB_kK); the table then covers "
                        "every variant already in --out (run variants in parallel processes this way)")
    p.add_argument("--out", default="runs/prm_table")
    args = p.parse_args(argv)

    import torch

    from agents.prm.scorer import load_prm
    from agents.prm.search import TreeSearch
    from agents.tools.stats import compare_runs
    from agents.prm.stop import PRMStop

    torch.set_num_threads(1)
    prm = load_prm(args.prm)

    def policy() -> Agent:
        if args.policy == "noisy":
            return NoisyRobotUser(args.sigma, args.p_random)
        from agents.base import make_agent

        kind = args.policy.partition(":")[0]
        return make_agent(args.policy, **({"deterministic": False} if kind == "ppo" else {}))

    variants = {"k1": lambda a: a, "stop": lambda a: PRMStop(a, prm, patience=args.patience),
                f"search_k{args.k}": lambda a: TreeSearch(a, prm, k=args.k)}
    if args.beam > 1:
        variants[f"beam{args.beam}_k{args.k}"] = lambda a: TreeSearch(a, prm, k=args.k, beam=args.beam)
    out = Path(args.out)
    todo = variants if args.variants is None else args.variants.split(",")
    unknown = set(todo) - set(variants)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {list(variants)}")
    for name in todo:
        agent = variants[name](policy())
        agent.name = f"{args.policy}:{name}"
        benchmark([agent], args.dataset, limit=args.limit, max_clicks=args.max_clicks, progress=False,
                  out=out / name)
    print(f"| variant | n | mIoU@{args.max_clicks} | diff vs K=1 | 95% CI |")
    print("|---|---|---|---|---|")
    for name in [v for v in variants if (out / v / "per_sample.csv").is_file()]:
        if not (out / "k1" / "per_sample.csv").is_file():
            break
        c = compare_runs(out / "k1", out / name)
        print(f"| {name} | {c.n} | {100 * c.mean_b:.1f} | {100 * c.diff:+.1f} | "
              f"[{100 * c.lo:+.1f}, {100 * c.hi:+.1f}] |")


if __name__ == "__main__":
    main()
