"""The tuning check of the step judge: ``ppo`` variants on coco128_seg samples the judge was not trained on
(800 on), captions dropped as on folder sets, under the first-click or box protocol::

    python -m agents.ppo.judge_tune 800 860 robot 10 'ppo|ppo@{"judge_candidates":6}'

Arguments: first and end sample, protocol (``robot``: the robot user's first click; ``box``: box start), clicks,
and agents separated by ``|``; ``ppo[:PATH]@{JSON}`` passes keyword arguments to :class:`PPOAgent`. Prints
mIoU@k per agent.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import Sequence

from hlmat_env.datasets.base import Dataset, Sample

COCO128 = ("coco:../shared/data/coco128_seg/annotations.json?images=../shared/data/coco128_seg/images"
           "&captions=generated")


class Uncaptioned(Dataset):
    """Samples ``indices`` of ``base`` with their captions dropped (as a ``folder:`` set has none)."""

    name = "uncaptioned"

    def __init__(self, base: Dataset, indices: Sequence[int]):
        self.base, self.indices = base, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> Sample:
        """Sample ``indices[index]`` of the base dataset with caption ``""``."""
        return dataclasses.replace(self.base.load(self.indices[index]), caption="")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    import torch

    from agents import benchmark
    from agents.ppo.agent import PPOAgent
    from agents.tools.benchmark import Protocol
    from hlmat_env.datasets import make_dataset

    args = list(sys.argv[1:] if argv is None else argv)
    start, stop, proto, clicks, specs = int(args[0]), int(args[1]), args[2], int(args[3]), args[4].split("|")
    dataset = args[5] if len(args) > 5 else COCO128
    torch.set_num_threads(1)
    base = make_dataset(dataset)
    data = Uncaptioned(base, range(start, min(stop, len(base))))
    agents = []
    for spec in specs:
        name, _, opts = spec.partition("@")
        if name.partition(":")[0] == "ppo":
            agent = PPOAgent(name.partition(":")[2] or None, **(json.loads(opts) if opts else {}))
            agent.name = spec
            agents.append(agent)
        else:
            agents.append(spec)
    protocol = Protocol(start="box") if proto == "box" else Protocol(start="empty", first_click="robot")
    result = benchmark(agents, data, protocol=protocol, max_clicks=clicks, progress=False)
    for label, m in result.metrics.items():
        print(label, proto, " ".join(f"{k}={100 * v:.1f}" for k, v in m.items() if k.startswith("miou@")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
