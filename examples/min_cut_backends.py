"""Seconds per click of the default segmenter with each min-cut backend (SciPy; PyMaxflow when installed) for
random clicks, the expensive case (a click far from the mask re-cuts most of the grid), and whether the two
give the same masks.

    python examples/min_cut_backends.py --images 10 --clicks 10
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from hlmat_env.actions import Click  # noqa: E402
from hlmat_env.datasets import make_dataset  # noqa: E402
from hlmat_env.segmenters.graphcut import GraphCutSegmenter  # noqa: E402
from hlmat_env.segmenters.gridcut import has_pymaxflow  # noqa: E402


def random_episode(backend: str, image: np.ndarray, n: int, rng: np.random.Generator):
    """Masks and seconds per predict for ``n`` uniform random clicks (positive outside the mask)."""
    seg = GraphCutSegmenter(maxflow=backend)
    seg.set_image(image)
    h, w = image.shape[:2]
    clicks, prev, masks, secs = [], None, [], []
    for _ in range(n):
        x, y = int(rng.integers(w)), int(rng.integers(h))
        clicks.append(Click(x, y, prev is None or not prev.mask[y, x]))
        t0 = time.perf_counter()
        prev = seg.predict(list(clicks), prev)
        secs.append(time.perf_counter() - t0)
        masks.append(prev.mask)
    return masks, secs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="folder:../shared/data/grabcut")
    p.add_argument("--images", type=int, default=10, help="first N images")
    p.add_argument("--clicks", type=int, default=10, help="random clicks per image")
    args = p.parse_args()
    ds = make_dataset(args.dataset)
    backends = ["scipy"] + ["pymaxflow"] * has_pymaxflow()
    results = {}
    for backend in backends:
        rng = np.random.default_rng(0)  # the same clicks for every backend
        runs = [random_episode(backend, ds[i].image, args.clicks, rng) for i in range(min(args.images, len(ds)))]
        results[backend] = ([m for r in runs for m in r[0]], [s for r in runs for s in r[1]])
    print("| backend | s/click median | s/click mean | same masks as scipy |\n|---|---|---|---|")
    for backend, (masks, secs) in results.items():
        same = all(np.array_equal(a, b) for a, b in zip(masks, results["scipy"][0]))
        print(f"| {backend} | {np.median(secs):.4f} | {np.mean(secs):.4f} | {'yes' if same else 'NO'} |")
    if not has_pymaxflow():
        print("PyMaxflow is not installed (pip install PyMaxflow, GPL-3): only SciPy was timed")


if __name__ == "__main__":
    main()
