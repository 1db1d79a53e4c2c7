"""``hlmat score-masks``: score given masks (a COCO results JSON) with the PRM and flag low-quality ones."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat score-masks`` and its flags."""
    p = subparsers.add_parser(
        "score-masks", help="estimate the IoU of given masks with the PRM; flag low-quality ones",
        description="Read a COCO results JSON (a list of {image_id, segmentation (RLE), score, category_id}), "
                    "estimate each mask's IoU with the PRM and write the records with 'prm_iou' and "
                    "'low_quality' (prm_iou < --threshold) added. image_id is matched to the dataset by "
                    "the sample's meta['image_id'], else its sample_id, else its index.")
    p.add_argument("--prm", required=True, help="PRM checkpoint (file or folder from hlmat train-prm, or 'default': "
                                                 "the shipped PRM); several comma-separated: their mean")
    p.add_argument("--dataset", required=True, help="dataset spec holding the images")
    p.add_argument("--masks", required=True, help="COCO results JSON")
    p.add_argument("--out", required=True, help="output JSON")
    p.add_argument("--threshold", type=float, default=0.75, help="low-quality below this IoU estimate (0.75)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat score-masks`` with the parsed ``args``; returns the exit code."""
    from agents.prm.mask_scoring import score_coco_results

    rows = score_coco_results(args.prm, args.dataset, args.masks, args.out, threshold=args.threshold)
    low = sum(r["low_quality"] for r in rows)
    print(f"scored {len(rows)} masks; {low} flagged low-quality (estimated IoU < {args.threshold}); wrote {args.out}")
    return 0
