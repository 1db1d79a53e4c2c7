"""Does a fine-tuned VLM use the image? Two checks of an ``hlmat sft`` model (the README's MLLM section).

1. Answer loss on the first ``--samples`` samples of an export with the real images, blank images and the
   images of other samples (the batch's order reversed): equal losses mean the image is ignored.
2. The first click on ``--scenes`` dataset scenes: how many distinct points it writes and how many land inside
   the target (the target is read only to count hits, after the model has answered).

    python examples/vlm_image_ablation.py --model runs/s6/tiny_sft --data runs/s6/sft10k
"""
from __future__ import annotations

import argparse

import gymnasium as gym
import torch

import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)
from agents.mllm.policy import MLLMAgent
from agents.mllm.sft import SFTCollator, load_samples
from agents.view import EpisodeView


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder (hlmat sft --out)")
    p.add_argument("--data", required=True, help="export folder it was trained on (hlmat export)")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--dataset", default="synthetic:val")
    p.add_argument("--scenes", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    agent = MLLMAgent(args.model)
    batch = SFTCollator(agent.processor)(load_samples(args.data)[: args.samples])
    losses = {}
    with torch.no_grad():
        for name, pixels in (("real", batch["pixel_values"]), ("blank", torch.zeros_like(batch["pixel_values"])),
                             ("other sample's", batch["pixel_values"].flip(0))):
            losses[name] = float(agent.model(**{**batch, "pixel_values": pixels}).loss)
    print("answer loss with " + ", ".join(f"{k} images {v:.4f}" for k, v in losses.items()))

    env = gym.make("HLMATEnv-v0", dataset=args.dataset)
    points, hits = set(), 0
    for i in range(args.scenes):
        env.reset(seed=i, options={"index": i})
        u = env.unwrapped
        agent.act_batch([EpisodeView(u)])
        click = agent.last_parsed[0].click
        if click is not None:
            points.add((click.x, click.y))
            hits += bool(u.dataset[i].target[click.y, click.x] == 1)
    print(f"first clicks on {args.scenes} scenes of {args.dataset}: {len(points)} distinct points, "
          f"{hits} inside the target")


if __name__ == "__main__":
    main()
