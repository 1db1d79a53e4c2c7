"""The results suite: one command that measures every number the README and the docs quote.

``hlmat results`` (``make bench``) runs four sections and writes, for each, a docs page
``docs/results/<section>.md`` (the full table, the settings and the command), its plot and a JSON file with
every metric; then it rewrites the README's results blocks (between ``<!-- results:<section> -->`` and
``<!-- /results:<section> -->``) with each section's short table. No number in those blocks is typed by hand.

Sections (the full run; ``--fast`` runs the same code on a few samples, for CI):

- ``segmenters``: the robot user with each segmenter on the real photos of ``DATA/grabcut`` and ``DATA/coco_mval``
  (all 400, and its tuning and held-out halves), 20 clicks.
- ``agents``: ``oracle``, ``random`` and the shipped ``ppo`` on ``synthetic:val`` (200 scenes) and on
  GrabCut, 20 clicks (:func:`agents.tools.benchmark.benchmark`).
- ``variants``: ``oracle`` and ``random`` on each rung of the variant ladder (:mod:`hlmat_env.variants`), val split
  (docs only).
- ``protocols``: ``oracle``, ``random`` and ``ppo`` on the real sets without descriptions under the robot
  user's first click and the box start (docs only; no README block).
- ``captions``: the share of unambiguous generated captions on ``DATA/coco128_seg`` (``coco:...?captions=generated``)
  and ``DATA/coco_mval`` (``folder:...?captions=class``) (docs only).
- ``demonstrations``: ``hlmat generate`` throughput and quality on ``synthetic:train``.
- ``prm``: a PRM trained by ``hlmat train-prm`` with the suite's small recipe (or ``--prm PATH``), its
  held-out Pearson / Spearman / MAE, and the stop signal and tree search at SegAgent's budget of 7 clicks.

A section whose data folder is missing is reported as not run, with the reason. Work files (trained PRM,
generated shards) go to ``--work`` (default ``build/results-work``), never into the docs.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

SECTIONS = ("segmenters", "agents", "variants", "protocols", "captions", "demonstrations", "prm")
README_SECTIONS = ("segmenters", "agents", "demonstrations", "prm")  # the sections with a README block
COMMAND = "hlmat results"


@dataclass(frozen=True)
class SuiteSize:
    """How much each section runs (the full suite, or the fast one CI runs)."""

    seg_limit: int | None  # samples per real set (None: all)
    seg_clicks: int
    seg_peer_limit: int | None  # samples for the slow grabcut peer (GrabCut only)
    agent_limit: int | None
    agent_real_limit: int | None
    agent_clicks: int
    variant_limit: int | None
    protocol_limits: tuple[int | None, int | None]  # GrabCut, COCO-MVal samples
    demo_limit: int
    prm_recipe: tuple[str, ...]
    prm_eval_limit: int
    prm_clicks: int


FULL = SuiteSize(seg_limit=None, seg_clicks=20, seg_peer_limit=None, agent_limit=None, agent_real_limit=None,
                 agent_clicks=20, variant_limit=100, protocol_limits=(None, 100),
                 demo_limit=400,
                 prm_recipe=("--limit", "300", "--extra-scenes", "1500", "--epochs", "8", "--val-limit", "50",
                             "--select-range", "100:150", "--select-from-train", "50", "--workers", "2"),
                 prm_eval_limit=100, prm_clicks=7)
FAST = SuiteSize(seg_limit=2, seg_clicks=3, seg_peer_limit=1, agent_limit=3, agent_real_limit=2, agent_clicks=3,
                 variant_limit=2, protocol_limits=(1, 1), demo_limit=4,
                 prm_recipe=("--limit", "3", "--extra-scenes", "2", "--val-limit", "2", "--select-from-train", "1",
                             "--rollout-clicks", "2", "--n-degraded", "1", "--epochs", "1", "--size", "32",
                             "--width", "4", "--verifier-width", "4"),
                 prm_eval_limit=2, prm_clicks=3)


@dataclass
class Section:
    """One section's output: the README's short table, the docs page's body, and its metrics."""

    name: str
    readme: str | None  # None: the section has no README block (docs page only)
    page: str
    metrics: dict[str, Any]
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------- helpers
def _pct(v: float) -> str:
    return "nan" if v != v else f"{100 * v:.1f}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _real_sets(data: Path) -> list[tuple[str, Path, str]]:
    """``(name, folder, role)`` of the real sets the suite reads in place."""
    return [("GrabCut", data / "grabcut", "tuned on"), ("COCO-MVal", data / "coco_mval", "all")]


# the default segmenter was tuned on the even positions of COCO-MVal (folder order); the odd ones are held out
COCO_MVAL_HALVES = (("tuning half: even positions, tuned on", 0), ("held-out half: odd positions", 1))


# ---------------------------------------------------------------------------------------------- sections
def segmenters_section(size: SuiteSize, data: Path, out: Path, progress: bool) -> Section:
    """The robot user with the default segmenter (and the ``grabcut`` peer on GrabCut) on real photos."""
    from tqdm import tqdm

    from agents.tools.segmenter_benchmark import mean_curve, plot_curves, run_episode, summarize_runs
    from hlmat_env.datasets import make_dataset
    from hlmat_env.segmenters import make_segmenter

    rows, metrics, curves, missing = [], {}, {}, []
    for set_name, folder, role in _real_sets(data):
        if not folder.is_dir():
            missing.append(f"{set_name} (`{folder}` absent)")
            continue
        dataset = make_dataset(f"folder:{folder}")
        for seg_name in ("default", "grabcut"):
            limit = size.seg_limit if seg_name == "default" else size.seg_peer_limit
            if seg_name == "grabcut" and set_name != "GrabCut":
                continue  # the peer takes 7-24 s an episode here: GrabCut alone keeps the suite short
            n = len(dataset) if limit is None else min(len(dataset), limit)
            segmenter = make_segmenter(seg_name)
            runs = [run_episode(segmenter, dataset[i], size.seg_clicks)
                    for i in tqdm(range(n), desc=f"{seg_name} on {set_name}", unit="img", disable=not progress)]
            s = summarize_runs(runs, size.seg_clicks)
            key = f"{seg_name} / {set_name}"
            metrics[key] = {"dataset": str(folder), "role": role, "n": n, **s}
            curves[key] = {"mean_iou_curve": mean_curve(runs, size.seg_clicks)}
            parts = [(role, runs)]
            if set_name == "COCO-MVal" and seg_name == "default":
                parts += [(half, runs[start::2]) for half, start in COCO_MVAL_HALVES if runs[start::2]]
            for part_role, part_runs in parts:
                if part_role != role:
                    s = summarize_runs(part_runs, size.seg_clicks)
                    metrics[f"{key} / {part_role}"] = {"dataset": str(folder), "role": part_role,
                                                       "n": len(part_runs), **s}
                rows.append([f"`{seg_name}`", f"{set_name} ({part_role})", str(len(part_runs)),
                             f"{s['noc85']:.2f}", f"{s['noc90']:.2f}", f"{s['nof90']:.0f}", _pct(s["miou@1"]),
                             _pct(s["miou@5"]),
                             _pct(s[f"miou@{size.seg_clicks}"] if f"miou@{size.seg_clicks}" in s else float("nan")),
                             f"{s['sec_per_click_median']:.3f}"])
    k = size.seg_clicks
    head = ["segmenter", "set", "n", "NoC@85", "NoC@90", "NoF@90", "mIoU@1", "mIoU@5", f"mIoU@{k}", "s/click"]
    table = _table(head, rows) if rows else "Not run: no real set found.\n"
    if curves:
        plot_curves(curves, str(out / "segmenters.png"))
    note = f"\nNot run: {', '.join(missing)}.\n" if missing else ""
    page = (f"Robot user (the standard protocol), {k} clicks, empty start; real photos read in place from "
            f"`{data}`. The default segmenter's parameters were chosen on GrabCut, synthetic scenes and the even "
            "positions of COCO-MVal (folder order); its odd positions were never tuned on (the held-out half). "
            "See [Segmenters](../segmenters.md) for what was tried.\n\n"
            + table + note + ("\n![IoU vs clicks](segmenters.png)\n" if curves else ""))
    return Section("segmenters", table + note, page, metrics)


def agents_section(size: SuiteSize, data: Path, out: Path, progress: bool) -> Section:
    """``oracle``, ``random`` and the shipped ``ppo`` on synthetic:val and on GrabCut."""
    from agents.tools.benchmark import benchmark, markdown_table, plot_curves

    k = size.agent_clicks
    sets = [("synthetic:val", "synthetic:val", size.agent_limit)]
    grabcut = data / "grabcut"
    missing = "" if grabcut.is_dir() else f"\nNot run on GrabCut: `{grabcut}` absent.\n"
    if grabcut.is_dir():
        sets.append(("GrabCut", f"folder:{grabcut}", size.agent_real_limit))
    rows, metrics, pages = [], {}, []
    for set_name, spec, limit in sets:
        r = benchmark(["oracle", "random", "ppo"], dataset=spec, limit=limit, max_clicks=k, seed=0,
                      progress=progress)
        slug = "synthetic" if set_name.startswith("synthetic") else set_name.lower()
        plot_curves(r, out / f"agents_{slug}.png")
        for agent, m in r.metrics.items():
            metrics[f"{agent} / {set_name}"] = {"dataset": spec, **m}
            rows.append([f"`{agent}`", set_name, f"{m['n']:.0f}", _pct(m["miou@1"]), _pct(m["miou@5"]),
                         _pct(m[f"miou@{k}"] if f"miou@{k}" in m else float("nan")), f"{m['noc90']:.2f}",
                         f"{m['nof90']:.0f}", f"{m['sec_per_step']:.3f}"])
        pages.append(f"### {set_name} (`{spec}`)\n\n" + markdown_table(r.metrics)
                     + f"\n![IoU vs clicks on {set_name}](agents_{slug}.png)\n")
    head = ["agent", "set", "n", "mIoU@1", "mIoU@5", f"mIoU@{k}", "NoC@90", "NoF@90", "s/step"]
    table = _table(head, rows)
    page = (f"Each agent from the empty start, {k} clicks, default segmenter, seed 0; `ppo` is the shipped "
            "policy (`agents/assets/ppo_grounded.zip`: a click policy trained on synthetic scenes only, and its step judge, "
            "trained on coco128_seg photos and synthetic scenes, which finishes when no candidate click is expected to "
            "help; see [the model card](../models/ppo.md)). mIoU in %.\n\n"
            + "\n".join(pages) + missing)
    return Section("agents", table + missing, page, metrics)


def variants_section(size: SuiteSize, out: Path, progress: bool) -> Section:
    """``oracle`` and ``random`` on each rung of the variant ladder, evaluated on the val split."""
    from agents.tools.benchmark import benchmark
    from hlmat_env.variants import VARIANTS

    k = size.agent_clicks
    rows, metrics = [], {}
    for env_id, variant in sorted(VARIANTS.items(), key=lambda kv: kv[1].rung):
        kw = variant.benchmark_kwargs()
        r = benchmark(["oracle", "random"], dataset=kw["dataset"], env_kwargs=kw["env_kwargs"],
                      limit=size.variant_limit, max_clicks=k, seed=0, progress=progress)
        for agent, m in r.metrics.items():
            metrics[f"{agent} / {env_id}"] = {"val_kwargs": variant.val_kwargs(), **m}
        o, rnd = r.metrics["oracle"], r.metrics["random"]
        rows.append([str(variant.rung), f"`{env_id}`", f"`{variant.val_dataset}`", f"{o['n']:.0f}",
                     _pct(o["miou@1"]), _pct(o["miou@5"]), f"{o['noc90']:.2f}", _pct(rnd["miou@1"]),
                     _pct(rnd["miou@5"]), f"{rnd['noc90']:.2f}"])
    table = _table(["rung", "id", "evaluated on", "n", "oracle mIoU@1", "oracle mIoU@5", "oracle NoC@90",
                    "random mIoU@1", "random mIoU@5", "random NoC@90"], rows)
    page = (f"Each registered rung of the ladder (see [the environment](../env.md)), evaluated on its val split "
            f"with `variant.benchmark_kwargs()`: oracle and random, {k} clicks, default segmenter, seed 0. "
            "mIoU in %; the box and refine rungs start above 0.\n\n" + table)
    return Section("variants", None, page, metrics)


def protocols_section(size: SuiteSize, data: Path, out: Path, progress: bool) -> Section:
    """Agents on the real sets without descriptions: the robot user's first click, and the box start."""
    from agents.tools.benchmark import Protocol, benchmark, markdown_table

    k = size.agent_clicks
    pages, metrics, missing = [], {}, []
    for (set_name, folder, _), limit in zip(_real_sets(data), size.protocol_limits):
        if not folder.is_dir():
            missing.append(f"{set_name} (`{folder}` absent)")
            continue
        for label, protocol in (("robot user's first click", Protocol(first_click="robot")),
                                ("box start", Protocol(start="box"))):
            r = benchmark(["oracle", "random", "ppo"], dataset=f"folder:{folder}", limit=limit, max_clicks=k,
                          seed=0, protocol=protocol, progress=progress)
            n = next(iter(r.metrics.values()))["n"]
            for agent, m in r.metrics.items():
                metrics[f"{agent} / {set_name} / {label}"] = {"start": protocol.start,
                                                               "first_click": protocol.first_click, **m}
            pages.append(f"### {set_name} ({n:.0f} samples), {label}\n\n" + markdown_table(r.metrics))
    note = f"\nNot run: {', '.join(missing)}.\n" if missing else ""
    page = (f"`oracle`, `random` and the shipped `ppo` on real photos without descriptions, under the two protocols "
            f"that make such data fair (see [Benchmark protocols](../protocols.md)); default segmenter, {k} clicks, "
            "seed 0. Under the first-click protocol click 1 is the robot user's, for every agent. mIoU in %.\n\n"
            + "\n".join(pages) + note)
    return Section("protocols", None, page, metrics)


def captions_section(data: Path) -> Section:
    """How many generated referring captions are unambiguous, on the real sets with class labels."""
    from hlmat_env.datasets import make_dataset
    from hlmat_env.datasets.instance_captions import caption_stats

    sets = [("coco128_seg", f"coco:{data}/coco128_seg/annotations.json?images={data}/coco128_seg/images"
             "&captions=generated", data / "coco128_seg"),
            ("COCO-MVal", f"folder:{data}/coco_mval?captions=class", data / "coco_mval")]
    rows, metrics, missing = [], {}, []
    for name, spec, folder in sets:
        if not folder.is_dir():
            missing.append(f"{name} (`{folder}` absent)")
            continue
        s = caption_stats(make_dataset(spec))
        metrics[name] = {"spec": spec, **s}
        how = ", ".join(f"{k} {v}" for k, v in sorted(s["by_how"].items()))
        rows.append([name, f"`{spec.replace(str(data), 'DATA')}`", str(s["instances"]), str(s["unambiguous"]),
                     _pct(s["share"]), _pct(s["share_among_several"]), how])
    table = _table(["set", "spec", "instances", "unambiguous", "share %", "share % where the category repeats",
                    "told apart by"], rows) if rows else "Not run: no set found.\n"
    note = f"\nNot run: {', '.join(missing)}.\n" if missing else ""
    page = ("Referring descriptions generated from instance labels and layout "
            "(see [Datasets: generated captions](../datasets.md)); a caption is unambiguous when no other instance "
            f"of its category in the image fits it. `DATA` = `{data}`.\n\n" + table + note)
    return Section("captions", None, page, metrics)


def demonstrations_section(size: SuiteSize, work: Path, workers: int, progress: bool) -> Section:
    """``hlmat generate``: robot-user demonstrations on synthetic:train, written from scratch."""
    import shutil

    from agents.tools.generate import GenerateConfig, generate

    target = work / "demos"
    shutil.rmtree(target, ignore_errors=True)  # throughput of a fresh run, not of a resume
    cfg = GenerateConfig(dataset="synthetic:train", out=target, limit=size.demo_limit, workers=workers,
                         progress=progress)
    rep = generate(cfg)
    m = {"episodes": rep.written, "errors": rep.errors, "seconds": rep.seconds, "workers": workers,
         "episodes_per_s": rep.episodes_per_s, "clicks_per_episode": rep.mean_kept_clicks,
         "mean_final_iou": rep.mean_final_iou}
    table = _table(["dataset", "episodes", "workers", "episodes/s", "clicks/episode", "mean final IoU", "errors"],
                   [["synthetic:train", str(rep.written), str(workers), f"{rep.episodes_per_s:.1f}",
                     f"{rep.mean_kept_clicks:.2f}", _pct(rep.mean_final_iou), str(rep.errors)]])
    page = ("`hlmat generate --dataset synthetic:train` with the robot user and the default segmenter (stop at "
            f"IoU 0.98 or 20 kept clicks), a fresh run of {size.demo_limit} samples; wall time on this machine.\n\n"
            + table)
    return Section("demonstrations", table, page, m)


def prm_section(size: SuiteSize, work: Path, prm: str | None, progress: bool) -> Section:
    """The PRM's held-out quality and its uses (stop signal, tree search) at a budget of 7 clicks."""
    from agents.prm.scorer import load_prm
    from agents.prm.search import TreeSearch
    from agents.prm.stop import PRMStop
    from agents.tools.benchmark import benchmark

    heldout: dict[str, Any] = {}
    if prm is None:
        out = work / "prm"
        cmd = [sys.executable, "-m", "agents.cli", "train-prm", "--out", str(out), "--cache", str(work / "prm_cache"),
               "--no-progress", *size.prm_recipe]
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
        prm = str(out / "prm.pt")
        heldout = json.loads((out / "metrics.json").read_text())["heldout"]
        origin = "`hlmat train-prm " + " ".join(size.prm_recipe) + "` (the suite's small recipe)"
    else:
        from agents.prm.scorer import checkpoint_paths
        from agents.prm.train import checkpoint_metrics

        first = checkpoint_paths(prm)[0]  # 'default': the shipped PRM, whose checkpoint holds its report
        metrics_file = Path(first).parent / "metrics.json"
        if metrics_file.is_file():
            heldout = json.loads(metrics_file.read_text()).get("heldout", {})
        else:
            heldout = {k: v for k, v in checkpoint_metrics(first).items() if k != "train_mean"}
        origin = f"`{prm}` (given with `--prm`)"
    scorer = load_prm(prm)
    k = size.prm_clicks
    wrappers: list[tuple[str, Callable[[Any], Any] | None]] = [
        ("plain", None), ("+ PRM stop", lambda a: PRMStop(a, scorer)),
        ("+ tree search (k=3)", lambda a: TreeSearch(a, scorer, k=3))]
    results: dict[str, dict[str, float]] = {}
    for label, wrap in wrappers:
        r = benchmark(["random", "ppo"], dataset="synthetic:val", limit=size.prm_eval_limit, max_clicks=k, seed=0,
                      wrap=wrap, progress=progress)
        for agent, m in r.metrics.items():
            results[f"{agent} {label}"] = m
    rows = [[f"`{a}`"] + [_pct(results[f"{a} {label}"][f"miou@{k}"] if f"miou@{k}" in results[f"{a} {label}"]
                               else float("nan")) for label, _ in wrappers] for a in ("random", "ppo")]
    search_table = _table(["policy"] + [lbl for lbl, _ in wrappers], rows)
    quality = _table(["PRM", "held-out states", "Pearson", "Spearman", "MAE (IoU points)", "constant predictor MAE"],
                     [["learned value head", f"{heldout.get('n', float('nan')):.0f}",
                       f"{heldout.get('pearson', float('nan')):.3f}", f"{heldout.get('spearman', float('nan')):.3f}",
                       f"{heldout.get('mae', float('nan')):.2f}", f"{heldout.get('mae_constant', float('nan')):.2f}"]])
    readme = quality + f"\nmIoU@{k} (%) on synthetic:val ({size.prm_eval_limit} scenes):\n\n" + search_table
    page = (f"PRM: {origin}. Held-out: states of synthetic:val scenes (train-prm's report).\n\n" + quality
            + f"\nThe PRM's uses, SegAgent's budget of {k} clicks, synthetic:val first {size.prm_eval_limit} scenes, "
            "seed 0: the stop signal answers with the best-estimated step; tree search keeps the best of 3 "
            "candidates per click.\n\n" + search_table)
    return Section("prm", readme, page, {"prm": prm, "heldout": heldout, "search": results})


# ---------------------------------------------------------------------------------------------- files
def update_readme(text: str, blocks: dict[str, str]) -> str:
    """``text`` with each ``<!-- results:NAME -->...<!-- /results:NAME -->`` block's body replaced.

    Raises:
        ValueError: a block named in ``blocks`` has no markers in ``text``.
    """
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README has no '<!-- results:{name} -->' ... '<!-- /results:{name} -->' block")
        text = pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)
    return text


def readme_blocks(out: Path) -> dict[str, str]:
    """The README bodies of the sections written in ``out`` (``<section>.readme.txt``)."""
    return {name: (out / f"{name}.readme.txt").read_text() for name in SECTIONS if (out / f"{name}.readme.txt").is_file()}


def _write(section: Section, out: Path, fast: bool, argv: list[str]) -> None:
    title = {"segmenters": "Segmenters", "agents": "Agents", "variants": "The variant ladder",
             "protocols": "Protocols for data without descriptions",
             "captions": "Generated captions",
             "demonstrations": "Demonstrations",
             "prm": "PRM, stop signal and tree search"}[section.name]
    mode = " (fast mode: a few samples, for CI; not the published numbers)" if fast else ""
    head = (f"# {title}\n\nWritten by `{' '.join([COMMAND, *argv])}`{mode} in {section.seconds:.0f} s on this "
            f"machine ({os.cpu_count()} CPUs). Do not edit: rerun the command.\n\n")
    (out / f"{section.name}.md").write_text(head + section.page)
    if section.readme is not None:
        (out / f"{section.name}.readme.txt").write_text(section.readme)
    (out / f"{section.name}.json").write_text(json.dumps(section.metrics, indent=1, default=float) + "\n")


def run_results(out: str | Path = "docs/results", *, fast: bool = False, data: str | Path = "../shared/data",
                sections: tuple[str, ...] = SECTIONS, prm: str | None = None, work: str | Path = "build/results-work",
                workers: int = 2, readme: str | Path | None = "README.md", progress: bool = True,
                argv: list[str] | None = None) -> dict[str, Section]:
    """Run ``sections`` of the suite, write their files to ``out`` and update ``readme``'s blocks.

    Args:
        out: folder of the docs pages (``<section>.md``), README bodies, JSON metrics and plots.
        fast: run every section on a few samples (CI); the files say so.
        data: folder holding the real sets (``grabcut/``, ``coco_mval/``); missing sets are reported.
        sections: which sections to run (others keep their files).
        prm: a PRM checkpoint for the ``prm`` section (default: train one with the suite's small recipe).
        work: folder for work files (trained PRM, demonstrations).
        workers: processes for demonstration generation.
        readme: README whose results blocks are rewritten from every section file in ``out`` (None: leave it).
        argv: the command's arguments, quoted in each page's header.
    Returns:
        The sections run, by name.
    """
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ValueError(f"unknown sections {bad}; choose from {list(SECTIONS)}")
    size = FAST if fast else FULL
    out, work, data = Path(out), Path(work), Path(data)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    runners: dict[str, Callable[[], Section]] = {
        "segmenters": lambda: segmenters_section(size, data, out, progress),
        "agents": lambda: agents_section(size, data, out, progress),
        "variants": lambda: variants_section(size, out, progress),
        "protocols": lambda: protocols_section(size, data, out, progress),
        "captions": lambda: captions_section(data),
        "demonstrations": lambda: demonstrations_section(size, work, workers, progress),
        "prm": lambda: prm_section(size, work, prm, progress),
    }
    done: dict[str, Section] = {}
    for name in sections:
        t0 = time.perf_counter()
        section = runners[name]()
        section.seconds = time.perf_counter() - t0
        _write(section, out, fast, list(argv or []))
        done[name] = section
    if readme is not None:
        path = Path(readme)
        path.write_text(update_readme(path.read_text(), readme_blocks(out)))
    return done
