"""Expert demonstrations at scale: record robot-user trajectories over a dataset, in parallel, resumably.

Each episode (sample index, start state) is recorded by :func:`hlmat_env.trajectories.record_trajectory` on an
env the worker builds for itself, with the reset seed derived from ``(seed, index, start)`` only, so the
output does not depend on the number of workers, their order or the backend.

Output (``OUT/``): shards ``part-NNNNN.jsonl`` (one episode per line). Finished episodes are appended (and
flushed) to ``part-NNNNN.jsonl.tmp`` as they arrive; a full shard is renamed atomically (``os.replace``) to its
final name. ``--resume`` first salvages the complete lines of any ``.tmp`` left by a killed run into a final
shard (a torn last line is dropped), then skips every episode id already in a shard: a kill at any moment
loses no finished episode and a resumed run writes none twice. Bad samples (unreadable image, empty mask...)
are logged to ``OUT/errors.jsonl``, counted and skipped (and retried by ``--resume``): one record per bad
episode (``episode_id``, ``sample_id``, the sample's ``files``, ``index``, ``start``, ``seed``, ``error``), the
latest attempt's; an episode written by a later run leaves the file. ``OUT/generate.json``
records the settings; a resume with different settings is refused. One run per folder (a lock file).

Backends: ``local`` (a ``multiprocessing`` pool with the ``spawn`` context; ``workers=1`` runs in-process) and
``ray`` (Ray tasks over chunks of episodes; a local instance, or a cluster via ``ray_address`` whose nodes
have this package installed and can read the dataset).

Formats: ``jsonl`` (the shards only) and ``minari``: the shards, then, at the end of each run, the Minari
dataset ``OUT/minari/<dataset_id>`` rebuilt from all of them (:mod:`agents.tools.generate_minari`).
"""
from __future__ import annotations

import fcntl
import json
import math
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from hlmat_env.errors import HLMATError, require
from hlmat_env.segmenters import segmenter_name, segmenter_version
from hlmat_env.trajectories import START_STATES, dumps, record_trajectory

BACKENDS = ("local", "ray")
FORMATS = ("jsonl", "minari")
SETTINGS_FILE = "generate.json"
_WORKER: dict[str, Any] = {}


@dataclass
class GenerateConfig:
    """Settings of a generation run (the ``hlmat generate`` flags)."""

    dataset: str
    out: str | Path
    segmenter: Any = "default"
    limit: int | None = None
    starts: tuple[str, ...] = ("empty",)
    seed: int = 0
    tau_stop: float = 0.98
    max_clicks: int = 20
    workers: int = 1
    backend: str = "local"
    shard_size: int = 100
    resume: bool = False
    ray_address: str | None = None
    env_kwargs: dict = field(default_factory=dict)
    progress: bool = True
    format: str = "jsonl"
    dataset_id: str = "hlmat/demonstrations-v0"
    minari_format: str = "hdf5"

    def __post_init__(self) -> None:
        self.starts = tuple(self.starts)
        bad = [s for s in self.starts if s not in START_STATES]
        if bad or not self.starts:
            raise ValueError(f"start states must be among {list(START_STATES)}, got {list(self.starts)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {list(FORMATS)}, got {self.format!r}")
        for name in ("workers", "shard_size", "max_clicks"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit!r}")

    @property
    def segmenter_name(self) -> str:
        """The segmenter's registered name (recorded with the shards)."""
        return segmenter_name(self.segmenter)

    def settings(self) -> dict[str, Any]:
        """What must match for a resume to continue the same run."""
        keys = ("dataset", "limit", "starts", "seed", "tau_stop", "max_clicks", "env_kwargs")
        d = {k: asdict(self)[k] for k in keys}
        d["starts"], d["segmenter"] = list(self.starts), self.segmenter_name
        d["segmenter_version"] = segmenter_version(self.segmenter)  # same name, other code: other masks
        return d


@dataclass
class GenerateReport:
    """What a generation run did: episodes written, skipped as done, failed, and their totals."""
    written: int = 0
    already_done: int = 0
    errors: int = 0
    seconds: float = 0.0
    kept_clicks: int = 0  # over the episodes written by this run
    final_iou_sum: float = 0.0
    minari_episodes: int | None = None  # episodes in OUT/minari/<dataset_id> (format minari)
    minari_seconds: float = 0.0  # building it (0 when the shards had not changed)

    @property
    def episodes_per_s(self) -> float:
        """Episodes written per second of wall time."""
        return self.written / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_kept_clicks(self) -> float:
        """Mean kept clicks per written episode."""
        return self.kept_clicks / self.written if self.written else 0.0

    @property
    def mean_final_iou(self) -> float:
        """Mean final IoU of the written episodes."""
        return self.final_iou_sum / self.written if self.written else 0.0


def episode_seed(seed: int, index: int, start: str) -> int:
    """Reset seed of one episode: a function of ``(seed, index, start)`` only."""
    return int(np.random.SeedSequence([int(seed), int(index), START_STATES.index(start)]).generate_state(1)[0])


# ---------------------------------------------------------------------------------------------- workers
def _init_worker(dataset: str, segmenter: Any, env_kwargs: dict, record_kwargs: dict) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import gymnasium as gym

    import hlmat_env  # noqa: F401  (registers the env)

    _WORKER["env"] = gym.make("HLMATEnv-v0", dataset=dataset, segmenter=segmenter, **env_kwargs)
    _WORKER["record"] = record_kwargs
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _run_task(task: tuple[int, str, int]) -> tuple[str, dict | tuple[str, int, float, str]]:
    """Record one episode; never raises (a bad sample becomes an error record naming it)."""
    index, start, seed = task
    try:
        traj = record_trajectory(_WORKER["env"], index, start=start, seed=seed, **_WORKER["record"])
        final = traj.clicks[-1].iou if traj.clicks else traj.start_iou
        return "ok", (dumps(traj), len(traj.clicks), float(final), traj.episode_id)
    except Exception as e:  # noqa: BLE001 - any failure of one sample is logged, never fatal
        return "error", {**_sample_names(index, start), "index": index, "start": start, "seed": seed,
                         "error": f"{type(e).__name__}: {e}"}


def _sample_names(index: int, start: str) -> dict[str, Any]:
    """``episode_id``, ``sample_id`` and ``files`` of a sample, for its error record (None where unknown)."""
    dataset = _WORKER["env"].unwrapped.dataset
    try:
        sid = str(dataset.sample_id(index))
    except Exception:  # noqa: BLE001 - naming a bad sample must not fail in turn
        sid = None
    try:
        files = [str(f) for f in dataset.files(index)]
    except Exception:  # noqa: BLE001
        files = []
    return {"episode_id": None if sid is None else f"{sid}#{start}", "sample_id": sid, "files": files}


def _ray_chunk(init_args: tuple, tasks: list[tuple[int, str, int]]) -> list[tuple[str, dict | tuple]]:
    if _WORKER.get("init_args") != init_args:  # one env per Ray worker process, reused across tasks
        _init_worker(*init_args)
        _WORKER["init_args"] = init_args
    return [_run_task(t) for t in tasks]


# ---------------------------------------------------------------------------------------------- shards
class ShardWriter:
    """Appends lines to ``part-N.jsonl.tmp`` (flushed per line) and renames it atomically when full."""

    def __init__(self, out: Path, shard_size: int):
        self.out, self.shard_size = out, shard_size
        numbers = [int(p.name[5:10]) for p in out.glob("part-*.jsonl*") if p.name[5:10].isdigit()]
        self.number = max(numbers, default=-1) + 1
        self._f, self._count = None, 0

    def add(self, line: str) -> None:
        """Append one episode record (a new shard starts when the current one is full)."""
        if self._f is None:
            self._f = open(self.out / f"part-{self.number:05d}.jsonl.tmp", "w", encoding="utf-8")
        self._f.write(line + "\n")
        self._f.flush()
        self._count += 1
        if self._count >= self.shard_size:
            self.close()

    def close(self) -> None:
        """Close the current shard and rename it into place (``part-N.jsonl.tmp`` -> ``part-N.jsonl``)."""
        if self._f is None:
            return
        self._f.close()
        tmp = self.out / f"part-{self.number:05d}.jsonl.tmp"
        os.replace(tmp, tmp.with_suffix(""))
        self._f, self._count, self.number = None, 0, self.number + 1


def salvage_partial_shards(out: Path) -> int:
    """Turn the complete lines of ``*.jsonl.tmp`` files (left by a killed run) into final shards; returns
    the number of episodes saved. A torn last line is dropped."""
    saved = 0
    for stale in out.glob("part-*.salvage"):  # a kill during a previous salvage
        stale.unlink()
    for tmp in sorted(out.glob("part-*.jsonl.tmp")):
        lines = []
        for line in tmp.read_text(encoding="utf-8", errors="replace").split("\n"):
            try:
                json.loads(line)
                lines.append(line)
            except json.JSONDecodeError:
                continue
        if lines:
            part = tmp.with_name(tmp.name + ".salvage")
            part.write_text("\n".join(lines) + "\n", encoding="utf-8")
            os.replace(part, tmp.with_suffix(""))
        tmp.unlink(missing_ok=True)
        saved += len(lines)
    return saved


def compact_errors(out: Path, done: set[str]) -> int:
    """Rewrite ``OUT/errors.jsonl`` with one record per bad episode: the latest record of each
    ``(index, start)``, without the episodes in ``done`` (written since). Atomic (a temporary file, then a
    rename), so a kill leaves the old or the new file; a torn last line is dropped. Returns the records kept.

    Args:
        out: the generation folder.
        done: episode ids present in the shards.
    """
    path = out / "errors.jsonl"
    if not path.exists():
        return 0
    latest: dict[tuple, dict] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            key = (rec["index"], rec["start"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        latest.pop(key, None)  # keep the order of the latest attempts
        latest[key] = rec
    kept = [r for r in latest.values() if r.get("episode_id") not in done]
    tmp = path.with_name("errors.jsonl.compact")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, path)
    return len(kept)


def done_episode_ids(out: Path) -> set[str]:
    """Episode ids present in the final shards of ``out``."""
    ids: set[str] = set()
    for shard in sorted(out.glob("*.jsonl")):
        if shard.name == "errors.jsonl":
            continue
        with open(shard, encoding="utf-8") as f:
            ids.update(json.loads(line)["episode_id"] for line in f if line.strip())
    return ids


def _prepare_out(cfg: GenerateConfig, out: Path) -> set[str]:
    settings_file = out / SETTINGS_FILE
    has_shards = any(p.name != "errors.jsonl" for p in out.glob("*.jsonl*"))
    if not cfg.resume and has_shards:
        raise HLMATError(f"{out} already holds trajectory shards; pass --resume to continue that run, "
                         "or choose another --out folder")
    if settings_file.exists():
        old = json.loads(settings_file.read_text())
        if old != cfg.settings() and cfg.resume:
            diff = {k: (old.get(k), v) for k, v in cfg.settings().items() if old.get(k) != v}
            raise HLMATError(f"cannot resume {out}: settings differ from the recorded run (old, new): {diff}")
    settings_file.write_text(json.dumps(cfg.settings(), indent=2) + "\n")
    salvage_partial_shards(out)
    done = done_episode_ids(out)
    compact_errors(out, done)  # a run killed after retrying bad samples may have appended duplicates
    return done


# ---------------------------------------------------------------------------------------------- engine
def generate(cfg: GenerateConfig) -> GenerateReport:
    """Run (or resume) a generation; returns counts and the throughput."""
    from hlmat_env.datasets import make_dataset

    if cfg.format == "minari":
        require("minari", "minari")  # before hours of generation, not after
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HLMATError(f"another generation is writing to {out}") from None
        done = _prepare_out(cfg, out)
        dataset = make_dataset(cfg.dataset)
        n = len(dataset) if cfg.limit is None else min(cfg.limit, len(dataset))
        todo, report = [], GenerateReport()
        for i in range(n):
            sid = dataset.sample_id(i)
            for start in cfg.starts:
                if f"{sid}#{start}" in done:
                    report.already_done += 1
                else:
                    todo.append((i, start, episode_seed(cfg.seed, i, start)))
        record_kwargs = {"tau_stop": cfg.tau_stop, "max_clicks": cfg.max_clicks,
                         "segmenter_name": cfg.segmenter_name, "dataset_spec": cfg.dataset}
        env_kwargs = {"max_clicks": cfg.max_clicks + 1, **cfg.env_kwargs}  # room for the final, dropped click
        init_args = (cfg.dataset, cfg.segmenter, env_kwargs, record_kwargs)
        results = _run_ray(cfg, init_args, todo) if cfg.backend == "ray" else _run_local(cfg, init_args, todo)
        written = _consume(cfg, out, results, len(todo), report)
        compact_errors(out, done | written)  # retried bad samples: one record each, the latest
        if cfg.format == "minari":
            from agents.tools.generate_minari import build_minari

            t0 = time.perf_counter()
            report.minari_episodes = build_minari(out, cfg)
            report.minari_seconds = time.perf_counter() - t0
    return report


def _consume(cfg: GenerateConfig, out: Path, results: Iterator, total: int, report: GenerateReport) -> set[str]:
    """Write the results as they arrive (episodes to shards, errors appended to ``errors.jsonl``, both
    flushed); returns the ids of the episodes written."""
    from tqdm import tqdm

    writer = ShardWriter(out, cfg.shard_size)
    written: set[str] = set()
    t0 = time.perf_counter()
    with open(out / "errors.jsonl", "a", encoding="utf-8") as errors, \
            tqdm(total=total, unit="ep", desc="generate", disable=not cfg.progress, smoothing=0.1) as bar:
        try:
            for kind, payload in results:
                if kind == "ok":
                    line, kept, final_iou, episode_id = payload
                    writer.add(line)
                    written.add(episode_id)
                    report.written += 1
                    report.kept_clicks += kept
                    report.final_iou_sum += final_iou
                else:
                    errors.write(json.dumps(payload) + "\n")
                    errors.flush()
                    report.errors += 1
                    bar.set_postfix(errors=report.errors)
                bar.update(1)
        finally:
            writer.close()
    report.seconds = time.perf_counter() - t0
    return written


def _run_local(cfg: GenerateConfig, init_args: tuple, todo: list) -> Iterator:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by spawned workers before numpy loads
    if cfg.workers == 1 or len(todo) <= 1:
        _init_worker(*init_args)
        yield from map(_run_task, todo)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(min(cfg.workers, len(todo)), initializer=_init_worker, initargs=init_args) as pool:
        yield from pool.imap_unordered(_run_task, todo, chunksize=1)


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _run_ray(cfg: GenerateConfig, init_args: tuple, todo: list) -> Iterator:
    ray = require("ray", "ray")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = not ray.is_initialized()
    if started:
        if cfg.ray_address:
            ray.init(address=cfg.ray_address)
        else:
            ray.init(num_cpus=cfg.workers, include_dashboard=False, log_to_driver=False)
    try:
        size = max(1, min(cfg.shard_size, math.ceil(len(todo) / (4 * cfg.workers)))) if todo else 1
        task = ray.remote(num_cpus=1)(_ray_chunk)
        args_ref = ray.put(init_args)
        pending = [task.remote(args_ref, chunk) for chunk in _chunks(todo, size)]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield from ray.get(ready[0])
    finally:
        if started:
            ray.shutdown()
