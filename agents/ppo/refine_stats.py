"""Where a click policy gains and loses IoU, click by click: the diagnosis behind the PPO docs' "why the shipped
``ppo`` is flat after click 3".

``python -m agents.ppo.refine_stats AGENT [N] [CLICKS]`` runs ``AGENT`` (a spec such as ``ppo``) on the first ``N``
scenes of synthetic:val (default 60) with ``CLICKS`` clicks (default 10) and prints, for click 1, clicks 2-3 and
clicks 4 on, how often a click raises or lowers the IoU, its mean change, its sign and whether it repeats an
earlier pixel; then how much mIoU stopping at each episode's best step would add, and how many episodes never
get above IoU 0.1.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

SPANS = ((1, 1), (2, 3), (4, None))


def refinement_stats(episodes: list[Any]) -> dict[str, Any]:
    """Per-click statistics of benchmark ``episodes`` (:class:`agents.rollout.Episode`): one row per span of
    :data:`SPANS` (clicks, mean IoU change, shares up / down / flat, share positive, share repeating a pixel),
    ``best_gap`` (mean over episodes of best IoU minus final IoU) and ``never_found`` (episodes never above 0.1)."""
    rows = []
    for ep in episodes:
        prev = [ep.start_iou] + list(ep.ious[:-1])
        for k, (c, a, b) in enumerate(zip(ep.clicks, prev, ep.ious), 1):
            rows.append((k, b - a, c.positive, any((c.x, c.y) == (d.x, d.y) for d in ep.clicks[:k - 1])))
    r = np.array(rows, float).reshape(-1, 4)
    spans = []
    for lo, hi in SPANS:
        m = (r[:, 0] >= lo) & (r[:, 0] <= (hi or np.inf))
        d = r[m, 1]
        share = (lambda x: float(np.mean(x))) if len(d) else (lambda x: 0.0)
        spans.append({"clicks": f"{lo}-{hi or 'end'}", "n": int(m.sum()), "mean_change": share(d),
                      "up": share(d > 1e-3), "down": share(d < -1e-3), "positive": share(r[m, 2]),
                      "repeat_pixel": share(r[m, 3])})
    gaps = [max(ep.ious) - ep.ious[-1] for ep in episodes if ep.ious]
    return {"spans": spans, "best_gap": float(np.mean(gaps)) if gaps else 0.0,
            "never_found": sum(1 for ep in episodes if not ep.ious or max(ep.ious) < 0.1), "episodes": len(episodes)}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (see the module docstring)."""
    import gymnasium as gym
    import torch

    import hlmat_env  # noqa: F401
    from agents.base import make_agent
    from agents.tools.benchmark import evaluate

    argv = sys.argv[1:] if argv is None else argv
    spec, n, clicks = argv[0], int(argv[1]) if len(argv) > 1 else 60, int(argv[2]) if len(argv) > 2 else 10
    torch.set_num_threads(1)
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val", max_clicks=clicks)
    stats = refinement_stats(evaluate(make_agent(spec), env, range(n), progress=False))
    for s in stats["spans"]:
        print(f"clicks {s['clicks']}: n={s['n']} mean change {s['mean_change']:+.4f} up {s['up']:.2f} "
              f"down {s['down']:.2f} positive {s['positive']:.2f} repeated pixel {s['repeat_pixel']:.2f}")
    print(f"stopping at the best step would add {100 * stats['best_gap']:.1f} mIoU@{clicks}; "
          f"{stats['never_found']} of {stats['episodes']} episodes never get above IoU 0.1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
