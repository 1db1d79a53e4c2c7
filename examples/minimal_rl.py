"""Minimal RL loop on HLMATEnv-v0: a random policy and the oracle (the robot user) on a few episodes.

    python examples/minimal_rl.py --episodes 3 --segmenter default
"""
from __future__ import annotations

import argparse

import gymnasium as gym

import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synthetic:val")
    p.add_argument("--segmenter", default="default")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--max-clicks", type=int, default=5)
    args = p.parse_args(argv)

    env = gym.make("HLMATEnv-v0", dataset=args.dataset, segmenter=args.segmenter, max_clicks=args.max_clicks)
    env.action_space.seed(0)
    for policy in ("random", "oracle"):
        for ep in range(args.episodes):
            obs, info = env.reset(seed=ep, options={"index": ep})
            total, done = 0.0, False
            while not done:
                # action = [kind (0 positive, 1 negative, 2 finish), x bin, y bin]
                action = env.unwrapped.expert_action() if policy == "oracle" else env.action_space.sample()
                obs, reward, terminated, truncated, info = env.step(action)
                total += reward
                done = terminated or truncated
            print(f"{policy:6s} episode {ep}: {info['num_clicks']} clicks, IoU {info['iou']:.3f} "
                  f"(return {total:+.3f}) - {info['caption']!r}")
    env.close()


if __name__ == "__main__":
    main()
