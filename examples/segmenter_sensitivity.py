"""How sensitive is the default segmenter to its parameters? The robot-user protocol (20 clicks) with the
defaults and with each parameter moved alone to a neighbouring value, on GrabCut and the synthetic split.

A result that holds only at one exact setting is tuned to the benchmark; one that holds across the
neighbourhood is a property of the method. Prints a markdown table (NoC@85 / NoC@90 per dataset).

    python examples/segmenter_sensitivity.py --workers 2
"""
from __future__ import annotations

import argparse
import os
from functools import partial
from multiprocessing import Pool

os.environ.setdefault("OMP_NUM_THREADS", "1")

from agents.tools.segmenter_benchmark import run_episode, summarize_runs  # noqa: E402
from hlmat_env.datasets import make_dataset  # noqa: E402
from hlmat_env.segmenters.graphcut import GraphCutSegmenter  # noqa: E402

NEIGHBOURS = [
    {}, {"side": 256}, {"side": 384}, {"bins": 24}, {"bins": 40}, {"gamma": 22.0}, {"gamma": 40.0},
    {"radius": 2}, {"radius": 4}, {"window": 3.0}, {"window": 5.0}, {"click_weight": 0.3},
    {"click_weight": 0.7}, {"init_frac": 0.08}, {"init_frac": 0.16},
]


def _episode(spec: str, kwargs: dict, index: int):
    return run_episode(GraphCutSegmenter(**kwargs), make_dataset(spec)[index], 20)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", action="append",
                   help="dataset spec (repeatable; default: ../shared/data/grabcut and synthetic:val)")
    p.add_argument("--limit", type=int, default=None, help="first N samples of each dataset")
    p.add_argument("--configs", type=int, default=len(NEIGHBOURS), help="first N settings of the sweep")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    specs = args.dataset or ["folder:../shared/data/grabcut", "synthetic:val"]
    lengths = {s: len(make_dataset(s)) if args.limit is None else min(args.limit, len(make_dataset(s)))
               for s in specs}
    header = "| change from the defaults | " + " | ".join(f"{s} NoC@85 / NoC@90" for s in specs) + " |"
    print(header + "\n" + "|---" * (len(specs) + 1) + "|", flush=True)
    with Pool(max(1, args.workers)) as pool:
        for kwargs in NEIGHBOURS[: args.configs]:
            cells = []
            for spec in specs:
                runs = pool.map(partial(_episode, spec, kwargs), range(lengths[spec]), chunksize=1)
                s = summarize_runs(runs, 20)
                cells.append(f"{s['noc85']:.2f} / {s['noc90']:.2f}")
            name = ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "none (defaults)"
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
