"""Run the benchmark (NoC/NoF, mIoU@k, cIoU/gIoU) for a few agents and print the table.

    python examples/run_benchmark.py --agents oracle,random,ppo --limit 200 --out runs/bench
(the same as `hlmat benchmark --agent oracle,random,ppo --dataset synthetic:val --out runs/bench`).
"""
from __future__ import annotations

import argparse

from agents.tools.benchmark import benchmark, markdown_table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", default="oracle,random")
    p.add_argument("--dataset", default="synthetic:val")
    p.add_argument("--segmenter", default="default")
    p.add_argument("--limit", type=int, default=5)
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--out", default="runs/bench_example")
    args = p.parse_args(argv)

    result = benchmark(args.agents.split(","), args.dataset, args.segmenter, limit=args.limit,
                       max_clicks=args.max_clicks, progress=False, out=args.out)
    print(markdown_table(result.metrics), end="")
    print(f"results, per-sample CSV and curves.png in {args.out}")


if __name__ == "__main__":
    main()
