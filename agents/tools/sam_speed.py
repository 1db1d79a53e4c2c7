"""SAM speed benchmark: a plain ``SamPredictor`` loop against hlmat's :class:`SamSegmenter` (and the same for
SAM 2: a plain ``SAM2ImagePredictor`` loop against :class:`~hlmat_env.segmenters.sam2.Sam2Segmenter`).

Both run the same robot-user episodes (``clicks`` clicks each, SegAgent's recipe) on one image, ``E`` times:

- **plain**: what a straightforward env does, ``SamPredictor.set_image`` at every reset, then ``predict`` per
  click (which upsamples all three multimask outputs at the first click);
- **hlmat**: :class:`~hlmat_env.segmenters.sam.SamSegmenter`, whose embedding cache encodes the image once.

Weights are random (``sam_model_registry[type](checkpoint=None)``, or ``build_sam2(config, None)`` for SAM 2):
the compute is the same as with real weights, so timings hold, while masks are meaningless. The report also
gives the decode time per click with and without ``sam_low_res`` (SAM only), how far the low-res masks are
from the exact ones, and batched vs sequential decoding of tree-search candidates.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hlmat_env import Click, RobotUser, make_dataset

GRABCUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "grabcut"


def default_dataset() -> str:
    """GrabCut when its folder is present next to the repo, else the synthetic validation split."""
    return f"folder:{GRABCUT}" if GRABCUT.is_dir() else "synthetic:val"


def _episode(set_image: Callable, step: Callable, image: np.ndarray, target: np.ndarray,
             n_clicks: int) -> tuple[list[Click], list[np.ndarray]]:
    """One robot-user episode: ``set_image(image)``, then per click ``(mask, state) = step(clicks, state)``
    (``state`` starts as None); returns the clicks and the mask after each."""
    set_image(image)
    user, clicks, state, mask, masks = RobotUser(target), [], None, np.zeros(target.shape, bool), []
    for _ in range(n_clicks):
        click = user.click(mask)
        if click is None:
            break
        clicks.append(click)
        mask, state = step(clicks, state)
        masks.append(mask)
    return clicks, masks


def _plain_step(predictor: Any) -> Callable:
    """A step of the plain loop: ``predictor.predict`` with every click and the previous low-res logits (which
    upsamples all three multimask outputs at the first click), keeping the best-scored mask."""
    def step(clicks: list[Click], logits: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        out, scores, low = predictor.predict(
            point_coords=np.array([[c.x, c.y] for c in clicks], float),
            point_labels=np.array([int(c.positive) for c in clicks]),
            mask_input=logits,
            multimask_output=len(clicks) == 1,
        )
        best = int(np.argmax(scores))
        return out[best], low[best][None]
    return step


def _hlmat_step(seg: Any) -> Callable:
    """A step with hlmat's segmenter: ``seg.predict`` with every click and the previous prediction."""
    def step(clicks: list[Click], prev: Any) -> tuple[np.ndarray, Any]:
        prev = seg.predict(clicks, prev)
        return prev.mask, prev
    return step


def _timed(fn, *args) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def _plain_vs_hlmat(predictor: Any, seg: Any, image: np.ndarray, target: np.ndarray, clicks: int,
                    episodes: Sequence[int]) -> tuple[list, list, bool, list[dict]]:
    """``max(episodes)`` timed episodes of each loop; returns (plain, hlmat) ``[(seconds, (clicks, masks))]``,
    whether every mask agrees, and one row per entry of ``episodes``."""
    n = max(episodes)
    plain = [_timed(_episode, predictor.set_image, _plain_step(predictor), image, target, clicks)
             for _ in range(n)]
    ours = [_timed(_episode, seg.set_image, _hlmat_step(seg), image, target, clicks) for _ in range(n)]
    same = all(
        len(p[1][1]) == len(o[1][1]) and all(np.array_equal(a, b) for a, b in zip(p[1][1], o[1][1]))
        for p, o in zip(plain, ours)
    )
    rows = []
    for e in episodes:
        t_plain = sum(t for t, _ in plain[:e]) / e
        t_ours = sum(t for t, _ in ours[:e]) / e
        rows.append({"episodes": e, "plain_s_per_episode": t_plain, "hlmat_s_per_episode": t_ours,
                     "speedup": t_plain / t_ours})
    return plain, ours, same, rows


def _batch_vs_sequential(seg: Any, episode_clicks: list[Click], shape: tuple[int, int], seed: int,
                         candidates: int) -> tuple[float, float]:
    """Tree search: ``candidates`` next clicks after the episode's first two, decoded in one ``predict_batch``
    call vs one ``predict`` call each; the median seconds of 5 of each."""
    rng = np.random.default_rng(seed)
    h, w = shape
    base = episode_clicks[:2]
    prev = seg.predict(base[:1])
    cands = [list(base) + [Click(int(rng.integers(w)), int(rng.integers(h)), bool(rng.integers(2)))]
             for _ in range(candidates)]
    batch_s = statistics.median(_timed(seg.predict_batch, cands, prev)[0] for _ in range(5))
    seq_s = statistics.median(_timed(lambda: [seg.predict(c, prev) for c in cands])[0] for _ in range(5))
    return batch_s, seq_s


def _report(sample: Any, clicks: int, plain: list, rows: list, same: bool, candidates: int, batch_s: float,
            seq_s: float) -> dict[str, Any]:
    """The keys :func:`bench_sam` and :func:`bench_sam2` share."""
    return {
        "image": sample.sample_id, "image_hw": list(sample.image.shape[:2]), "clicks": clicks,
        "plain_episode_s": statistics.median(t for t, _ in plain),
        "rows": rows, "identical_masks": same,
        "candidates": candidates, "batch_ms": 1000 * batch_s, "sequential_ms": 1000 * seq_s,
    }


def bench_sam(
    model_type: str = "vit_b",
    episodes: Sequence[int] = (1, 5),
    clicks: int = 10,
    dataset: str | None = None,
    index: int = 0,
    device: str | None = None,
    seed: int = 0,
    candidates: int = 8,
) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-ready dict (``rows`` = one per entry of ``episodes``)."""
    import torch
    from segment_anything import SamPredictor, sam_model_registry

    from hlmat_env.segmenters.sam import SamSegmenter

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    model = sam_model_registry[model_type](checkpoint=None).to(device).eval()
    sample = make_dataset(dataset or default_dataset())[index]
    image, target = sample.image, sample.target

    seg = SamSegmenter(sam_model=model, device=device)
    plain, ours, same, rows = _plain_vs_hlmat(SamPredictor(model), seg, image, target, clicks, episodes)

    # decode only (embedding cached): exact postprocess vs low-res cv2 resampling, same clicks
    episode_clicks = ours[0][1][0]
    fast = SamSegmenter(sam_model=model, device=device, sam_low_res=True, embedding_cache=seg.cache)
    per_mode: dict[str, list[float]] = {"exact": [], "low_res": []}
    agreement = []
    for _ in range(3):
        seg.set_image(image)
        fast.set_image(image)
        prev_e = prev_f = None
        for k in range(len(episode_clicks)):
            dt_e, prev_e = _timed(seg.predict, episode_clicks[: k + 1], prev_e)
            dt_f, prev_f = _timed(fast.predict, episode_clicks[: k + 1], prev_f)
            per_mode["exact"].append(dt_e)
            per_mode["low_res"].append(dt_f)
            agreement.append(_mask_iou(prev_f.mask, prev_e.mask))

    batch_s, seq_s = _batch_vs_sequential(seg, episode_clicks, target.shape, seed, candidates)
    return {
        "model_type": model_type, "device": device, "threads": torch.get_num_threads(),
        **_report(sample, clicks, plain, rows, same, candidates, batch_s, seq_s),
        "decode_ms_exact": 1000 * statistics.median(per_mode["exact"]),
        "decode_ms_low_res": 1000 * statistics.median(per_mode["low_res"]),
        "low_res_iou_vs_exact_min": min(agreement), "low_res_iou_vs_exact_mean": float(np.mean(agreement)),
    }


def bench_sam2(
    config: str = "sam2.1_hiera_tiny",
    episodes: Sequence[int] = (1, 5),
    clicks: int = 10,
    dataset: str | None = None,
    index: int = 0,
    device: str | None = None,
    seed: int = 0,
    candidates: int = 8,
) -> dict[str, Any]:
    """:func:`bench_sam` for SAM 2: a plain ``SAM2ImagePredictor`` loop against :class:`Sam2Segmenter`.

    ``config`` is a name of :data:`~hlmat_env.segmenters.sam2.SAM2_CONFIGS` (or any name that
    :func:`~hlmat_env.segmenters.sam2.resolve_sam2_config` takes). Returns the same keys as :func:`bench_sam`;
    the ``sam_low_res`` ones are None (SAM 2 has no such option).
    """
    import torch
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from hlmat_env.segmenters.sam2 import Sam2Segmenter, resolve_sam2_config

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    config_path, config_name = resolve_sam2_config(config)
    torch.manual_seed(seed)
    model = build_sam2(config_path, None, device=device).eval()
    sample = make_dataset(dataset or default_dataset())[index]
    image, target = sample.image, sample.target

    seg = Sam2Segmenter(sam2_model=model, device=device)
    plain, ours, same, rows = _plain_vs_hlmat(SAM2ImagePredictor(model), seg, image, target, clicks, episodes)

    episode_clicks = ours[0][1][0]
    decode = []
    for _ in range(3):
        seg.set_image(image)
        prev = None
        for k in range(len(episode_clicks)):
            dt, prev = _timed(seg.predict, episode_clicks[: k + 1], prev)
            decode.append(dt)

    batch_s, seq_s = _batch_vs_sequential(seg, episode_clicks, target.shape, seed, candidates)
    return {
        "segmenter": "sam2", "model_type": config_name, "device": device, "threads": torch.get_num_threads(),
        **_report(sample, clicks, plain, rows, same, candidates, batch_s, seq_s),
        "decode_ms_exact": 1000 * statistics.median(decode), "decode_ms_low_res": None,
        "low_res_iou_vs_exact_min": None, "low_res_iou_vs_exact_mean": None,
    }


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def format_report(r: dict[str, Any]) -> str:
    """Markdown table and notes for :func:`bench_sam`'s result."""
    sam2 = r.get("segmenter") == "sam2"
    names = ("SAM2ImagePredictor", "Sam2Segmenter") if sam2 else ("SamPredictor", "SamSegmenter")
    lines = [
        f"SAM{' 2' if sam2 else ''} {r['model_type']} (random weights) on {r['device']} ({r['threads']} "
        f"threads), image {r['image']} {r['image_hw'][0]}x{r['image_hw'][1]}, {r['clicks']}-click robot-user "
        "episodes",
        "",
        f"| episodes on one image | plain {names[0]} loop (s/episode) | hlmat {names[1]} (s/episode) "
        "| speed-up |",
        "|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        lines.append(f"| {row['episodes']} | {row['plain_s_per_episode']:.2f} "
                     f"| {row['hlmat_s_per_episode']:.2f} | {row['speedup']:.1f}x |")
    lines += [
        "",
        f"- same masks as the plain loop at every click: {'yes' if r['identical_masks'] else 'NO'}",
        f"- plain episode (embedding + {r['clicks']} clicks), median: {r['plain_episode_s']:.2f} s",
        f"- decode per click, embedding cached (median): {r['decode_ms_exact']:.1f} ms"
        if r["decode_ms_low_res"] is None else
        f"- decode per click, embedding cached (median): exact {r['decode_ms_exact']:.1f} ms, sam_low_res "
        f"{r['decode_ms_low_res']:.1f} ms; low-res mask IoU vs exact: "
        f"mean {r['low_res_iou_vs_exact_mean']:.4f}, "
        f"min {r['low_res_iou_vs_exact_min']:.4f}",
        f"- {r['candidates']} tree-search candidates: predict_batch {r['batch_ms']:.1f} ms vs "
        f"{r['candidates']} predict calls {r['sequential_ms']:.1f} ms (median of 5)",
    ]
    return "\n".join(lines)
