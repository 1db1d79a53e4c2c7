"""Where do an agent's clicks land: the first one relative to the target, the later ones on the scenes it hit?

A diagnostic, not an agent: it reads each sample's target from the dataset *after* every click, only to
classify that click and to record its IoU change and its distance to the target. The first click: inside the
target, a near miss (outside, within ``--near`` pixels of it) or elsewhere, with the mean IoU it gives. Each
later click on a scene whose first click hit (IoU above ``--hit``): positive/negative, inside/outside the
mask and the target, a repeat of an earlier click or new. The agent never sees the target.

    python examples/click_diagnosis.py --agent mllm:runs/s9/tiny_c4 --agent-kwargs '{"coords": "qwen2"}'
"""
import argparse
import collections
import json

import cv2
import gymnasium as gym
import numpy as np
import torch

import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)
from agents.base import make_agent
from agents.view import view_for
from hlmat_env.actions import decode_action
from hlmat_env.datasets import make_dataset


def distance_px(region: np.ndarray, x: int, y: int) -> float:
    """Euclidean pixels from (x, y), a pixel of ``region``, to the nearest pixel outside it."""
    return float(cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3)[y, x])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", required=True)
    p.add_argument("--agent-kwargs", default="{}", help="JSON keyword arguments of the agent")
    p.add_argument("--dataset", default="synthetic:val")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--max-clicks", type=int, default=5)
    p.add_argument("--hit", type=float, default=0.2, help="IoU after the first click that counts as a hit")
    p.add_argument("--near", type=float, default=5.0, help="pixels from the target that count as a near miss")
    args = p.parse_args()
    torch.set_num_threads(1)
    env = gym.make("HLMATEnv-v0", dataset=args.dataset, max_clicks=args.max_clicks)
    data, u = make_dataset(args.dataset), env.unwrapped
    agent = make_agent(args.agent, **json.loads(args.agent_kwargs))
    counts, deltas, dists = collections.Counter(), collections.defaultdict(list), collections.defaultdict(list)
    first = collections.defaultdict(list)  # where the first click landed -> IoU@1 of each
    for i in range(min(args.limit, len(data))):
        target = data[i].target > 0
        obs, info = env.reset(seed=i, options={"index": i})
        view = view_for(agent, env)  # the oracle gets its privileged view, every other agent a plain one
        agent.reset(view)
        first_iou, earlier = None, []
        for _ in range(args.max_clicks):
            d = agent.act(obs, view)
            if d.action is None or int(d.action[0]) == 2:  # invalid or finish
                break
            h, w = u.mask.shape
            c = decode_action(d.action, w, h, u.coord_bins)
            in_mask, in_target, before = bool(u.mask[c.y, c.x]), bool(target[c.y, c.x]), info["iou"]
            obs, _, terminated, truncated, info = env.step(d.action)
            if first_iou is None:
                first_iou = info["iou"]
                gap = distance_px(~target, c.x, c.y)  # 0 inside the target
                where = "in the target" if in_target else "near miss" if gap <= args.near else "elsewhere"
                first[where].append(first_iou)
            elif first_iou > args.hit:
                key = ("pos" if c.positive else "neg", "in_mask" if in_mask else "out_mask",
                       "in_target" if in_target else "out_target", "repeat" if (c.x, c.y) in earlier else "new")
                counts[key] += 1
                deltas[key].append(info["iou"] - before)
                dists[key].append(distance_px(target if in_target else ~target, c.x, c.y))
            earlier.append((c.x, c.y))
            if terminated or truncated:
                break
    for where in ("in the target", "near miss", "elsewhere"):
        ious = first[where]
        print(f"first click {where}: {len(ious)}, mean IoU@1 {np.mean(ious) if ious else float('nan'):.3f}")
    for key in sorted(counts):
        print(" ".join(key), counts[key], f"dIoU sum {np.sum(deltas[key]):+.3f} mean {np.mean(deltas[key]):+.4f},",
              f"px to the target boundary median {np.median(dists[key]):.1f}")


if __name__ == "__main__":
    main()
