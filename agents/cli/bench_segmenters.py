"""``hlmat bench-segmenters``: NoC/NoF/mIoU and seconds per click of segmenters under the robot user."""
from __future__ import annotations

import argparse
import json
from typing import Any

DEFAULT_SETS = ("folder:../shared/data/grabcut", "folder:../shared/data/coco_mval", "synthetic:val")
"""The sets the default segmenter is measured on: GrabCut, COCO-MVal (real photos), the synthetic scenes."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat bench-segmenters`` and its flags."""
    p = subparsers.add_parser(
        "bench-segmenters", help="compare segmenters under the standard robot-user protocol",
        description="Runs the robot user (clicked pixels excluded, all clicks and the previous prediction "
                    "passed to predict) with each segmenter over one or more datasets; prints a markdown "
                    "table per dataset and writes OUT/segmenters.md (the tables), OUT/segmenters.json and "
                    "OUT/segmenters_curves.png (mean IoU vs clicks, one panel per dataset).")
    p.add_argument("--segmenter", default="default,grabcut",
                   help="comma-separated segmenter names; ratios are against the first "
                        "(default: default,grabcut)")
    p.add_argument("--segmenter-kwargs", default="{}", metavar="JSON",
                   help="JSON object of constructor kwargs per segmenter name, "
                        "e.g. '{\"sam\": {\"sam_checkpoint\": \"x.pth\", \"sam_model_type\": \"vit_b\"}}'")
    p.add_argument("--dataset", nargs="+", default=list(DEFAULT_SETS), metavar="SPEC",
                   help="one or more dataset specs, each with its own table and plot panel "
                        f"(default: {' '.join(DEFAULT_SETS)})")
    p.add_argument("--half", choices=("even", "odd"), default=None,
                   help="use only the samples at even (0, 2, 4...) or odd positions of each dataset: on "
                        "coco_mval, the tuning and the held-out half of the default segmenter")
    p.add_argument("--limit", type=int, default=None, help="use only the first N samples")
    p.add_argument("--max-clicks", type=int, default=20, help="click budget per sample (default: 20)")
    p.add_argument("--out", required=True, help="output folder")
    return p


def _parse_kwargs(text: str, names: list[str]) -> dict[str, dict]:
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--segmenter-kwargs is not valid JSON ({e}): {text!r}") from None
    if not isinstance(kwargs, dict) or not all(isinstance(v, dict) for v in kwargs.values()):
        raise SystemExit(f"--segmenter-kwargs must map segmenter names to objects, got {text!r}")
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise SystemExit(f"--segmenter-kwargs names {unknown} are not in --segmenter {names}")
    return kwargs


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat bench-segmenters`` with the parsed ``args``; returns the exit code."""
    import os
    from pathlib import Path

    from tqdm import tqdm

    from agents.tools.segmenter_benchmark import (
        markdown_table,
        mean_curve,
        plot_sets,
        run_episode,
        summarize_runs,
    )
    from hlmat_env.datasets import make_dataset
    from hlmat_env.segmenters import make_segmenter

    names = [n.strip() for n in args.segmenter.split(",") if n.strip()]
    if not names:
        raise SystemExit(f"--segmenter needs at least one name, got {args.segmenter!r}")
    if args.max_clicks < 1:
        raise SystemExit(f"--max-clicks must be >= 1, got {args.max_clicks}")
    kwargs = _parse_kwargs(args.segmenter_kwargs, names)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sets: dict[str, dict[str, Any]] = {}
    samples: dict[str, int] = {}
    for spec in args.dataset:
        dataset = make_dataset(spec)
        index = list(range(len(dataset)))
        if args.half is not None:
            index = index[0 if args.half == "even" else 1::2]
        if args.limit is not None:
            index = index[:max(1, args.limit)]
        n = samples[spec] = len(index)
        results: dict[str, dict[str, Any]] = {}
        for name in names:
            segmenter = make_segmenter(name, **kwargs.get(name, {}))
            runs = []
            for i in tqdm(index, desc=f"{name} on {spec}", unit="img"):
                runs.append(run_episode(segmenter, dataset[i], args.max_clicks))
            results[name] = {
                "min_cut_backend": getattr(segmenter, "min_cut_backend", None),  # timing context (same masks)
                "summary": summarize_runs(runs, args.max_clicks),
                "mean_iou_curve": mean_curve(runs, args.max_clicks),
                "per_sample": {r.sample_id: {"ious": r.ious, "click_seconds": r.click_seconds,
                                             "set_image_seconds": r.set_image_seconds} for r in runs},
            }
        sets[spec] = results
    half = "" if args.half is None else f"; samples at {args.half} positions only"
    parts = [f"Robot user, {args.max_clicks} clicks max{half}; ratios are against `{names[0]}`."]
    for spec, results in sets.items():
        table = markdown_table(results)
        print(f"\n{spec} ({samples[spec]} samples)\n{table}")
        parts.append(f"### `{spec}` ({samples[spec]} samples)\n\n{table}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "segmenters.md").write_text("\n\n".join(parts) + "\n")
    meta = {"datasets": list(sets), "samples": samples, "half": args.half, "max_clicks": args.max_clicks,
            "segmenter_kwargs": kwargs}
    (out / "segmenters.json").write_text(json.dumps({"meta": meta, "sets": sets}, indent=1))
    plot_sets(sets, str(out / "segmenters_curves.png"))
    print(f"wrote {out / 'segmenters.md'}, {out / 'segmenters.json'}, {out / 'segmenters_curves.png'}")
    return 0
