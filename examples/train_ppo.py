"""Train the PPO baseline: oracle demonstrations -> behaviour cloning -> PPO fine-tuning, then score it.

Tiny budget by default (a smoke run); the shipped model comes from staged ``hlmat train-ppo`` runs (the
README's recipe), starting with:
    hlmat train-ppo --out runs/s2/bc6 --bc-demos runs/s2/demos --timesteps 0 --bc-epochs 6
"""
from __future__ import annotations

import argparse

import torch

from agents.tools.benchmark import benchmark, markdown_table
from agents.ppo.train import train


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synthetic:train")
    p.add_argument("--eval-dataset", default="synthetic:val")
    p.add_argument("--segmenter", default="default")
    p.add_argument("--out", default="runs/ppo_example")
    p.add_argument("--timesteps", type=int, default=64)
    p.add_argument("--bc-episodes", type=int, default=4)
    p.add_argument("--bc-epochs", type=int, default=2)
    p.add_argument("--eval-limit", type=int, default=3)
    p.add_argument("--n-envs", type=int, default=1)
    p.add_argument("--n-steps", type=int, default=64, help="rollout steps per env and PPO update")
    p.add_argument("--max-clicks", type=int, default=10, help="clicks per training and evaluation episode")
    p.add_argument("--bc-clicks", type=int, default=3, help="clicks per demonstration episode")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    model = train(args.dataset, args.segmenter, args.out, timesteps=args.timesteps,
                  bc_demos=f"{args.out}/demos", bc_episodes=args.bc_episodes, bc_clicks=args.bc_clicks,
                  bc_epochs=args.bc_epochs, n_envs=args.n_envs, n_steps=args.n_steps,
                  batch_size=min(64, args.n_steps * args.n_envs), max_clicks=args.max_clicks, progress=False)
    result = benchmark(["oracle", "random", f"ppo:{args.out}/bc_model.zip", f"ppo:{model}"], args.eval_dataset,
                       args.segmenter, limit=args.eval_limit, max_clicks=args.max_clicks, progress=False,
                       out=f"{args.out}/benchmark")
    print(markdown_table(result.metrics), end="")


if __name__ == "__main__":
    main()
