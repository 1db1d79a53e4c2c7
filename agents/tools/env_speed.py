"""Env throughput: ``HLMATEnv-v0`` steps per second in one env, in sync and async vector envs and in RLlib env
runners, as ratios to one env measured in the same run.

For each (dataset, policy, mode) :func:`measure_env_speed` builds the envs (not timed), runs a warm-up (not
timed), then times a fixed number of env steps, resetting episodes as they end (the resets are inside the
timed loop: a mode pays for its own resets). Modes:

- ``single``: one env from ``gym.make``, stepped in a plain loop, ``reset()`` after each episode end;
- ``sync`` / ``async``: ``gym.make_vec(..., vectorization_mode="sync"|"async")`` with ``num_envs`` sub-envs
  and gymnasium's own autoreset. In gymnasium 1.x's default ``NEXT_STEP`` autoreset mode the ``step`` call
  after a sub-env's episode end only resets that sub-env (its action is ignored); such reset steps are
  counted as resets, not as env steps;
- ``rllib``: RLlib ``SingleAgentEnvRunner`` actors (an ``EnvRunnerGroup`` without a local runner), first with
  one runner, then with ``num_envs`` runners sampling in parallel, one env each; RLlib counts env steps the
  same way (a reset is not a timestep). Runs where ``ray.rllib`` imports (``pip install "hlmat[rllib]"``);
  otherwise its rows say ``not run`` and why. Ray's own ``rllib`` extra pins one gymnasium version; where
  another one is installed the report says so (hlmat's ``rllib`` extra leaves the pin out, and
  ``tests/test_rllib.py`` trains PPO with RLlib on the installed gymnasium).

**env steps** are thus always real ``env.step`` transitions (clicks or finishes), the same unit in every mode;
``step_calls`` is how many (vector) ``step`` calls that took. Policies:

- ``random``: ``action_space.sample()`` on the env's own seeded action space (a third of the actions are
  finish, so episodes are short and resets frequent);
- ``oracle``: the robot user's next click, ``env.unwrapped.expert_action()`` for one env,
  ``envs.call("expert_action")`` (one action per sub-env, a round trip to the workers in ``async`` mode) for
  vector envs, and an action wrapper that replaces RLlib's random action by the expert's in env runners.
  Fetching the action is part of the timed loop in every mode.
- ``module`` (not in the defaults): an untrained :class:`agents.rllib.module.ClickCNNModule` samples the
  actions on :func:`agents.rllib.env.make_env`'s env (64-pixel observation, 16 x 16 click grid), in one env
  and in RLlib env runners (its forward pass per step is timed: what PPO's sampling costs); needs RLlib.

Numbers depend on the machine and on what else runs on it: ratios measured next to other jobs are lower bounds
of what an idle machine gives. To tell the two apart, each row also reports the CPU cores the mode really got
(CPU seconds of this process and of the async workers over the wall time): an async run that got about one
core was limited by the machine, not by the vector env. Set one OpenMP/torch thread per process
(``OMP_NUM_THREADS=1``, inherited by the async workers; :func:`measure_env_speed` sets it when unset) so
that one env and N workers compare fairly.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import math
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

ENV_ID = "HLMATEnv-v0"
POLICIES = ("random", "oracle", "module")
MODULE_MODES = "the module policy is measured in one env and in RLlib env runners only"
DEFAULT_POLICIES = ("random", "oracle")
MODES = ("single", "sync", "async", "rllib")
DEFAULT_DATASETS = ("synthetic:val", "folder:../shared/data/grabcut")
REPO = Path(__file__).resolve().parents[2]
COUNTING = ("env steps = env.step transitions (clicks and finishes); gymnasium's NEXT_STEP autoreset steps "
            "and reset() calls are counted as resets, their time is included")


# ---------------------------------------------------------------------------------------------- helpers


def _one_thread() -> None:
    """One OpenMP / BLAS / OpenCV / torch thread in this process and (through the environment) in its
    children."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - opencv is a dependency of hlmat_env
        pass
    if "torch" in sys.modules:  # never import torch just for this
        sys.modules["torch"].set_num_threads(1)


def resolve_dataset(spec: str) -> str:
    """The dataset spec to build: a relative ``folder:`` path that does not exist from the working directory
    is taken relative to the repository root (so the default GrabCut spec works from anywhere).

    Args:
        spec: a dataset spec such as ``"synthetic:val"`` or ``"folder:../shared/data/grabcut"``.

    Returns:
        ``spec`` itself, or the ``folder:`` spec with the path made absolute against the repository root.
    """
    if spec.startswith("folder:"):
        path, _, query = spec[len("folder:"):].partition("?")
        if not os.path.isabs(path) and not os.path.isdir(path) and (REPO / path).is_dir():
            return f"folder:{(REPO / path).resolve()}" + (f"?{query}" if query else "")
    return spec


def dataset_problem(spec: str) -> str | None:
    """Why a dataset cannot be benchmarked here (a missing folder, a bad spec), or None when it can.

    Args:
        spec: a dataset spec (resolved with :func:`resolve_dataset`).

    Returns:
        A short reason, or None.
    """
    from hlmat_env import make_dataset

    resolved = resolve_dataset(spec)
    if resolved.startswith("folder:"):
        path = resolved[len("folder:"):].partition("?")[0]
        if not os.path.isdir(path):
            return f"no folder {path}"
    try:
        n = len(make_dataset(resolved))
    except Exception as e:  # noqa: BLE001 - any failure to build is reported in the row
        return f"{type(e).__name__}: {e}"
    return None if n > 0 else "empty dataset"


def rllib_problem() -> str | None:
    """Why RLlib env runners cannot be measured in this Python environment, or None when they can.

    Returns:
        A one-line reason (ray missing, or ``ray.rllib`` failing to import), or None.
    """
    try:
        importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return "ray is not installed (pip install 'hlmat[rllib]')"
    try:
        importlib.import_module("ray.rllib")
    except Exception as e:  # noqa: BLE001 - ImportError, or ray failing at import time
        return f"ray.rllib does not import ({type(e).__name__}: {e}; pip install 'hlmat[rllib]')"
    return None


def rllib_gymnasium_note() -> str | None:
    """A note when ray's ``rllib`` extra pins another gymnasium version than the installed one, else None.

    Ray pins one exact version; hlmat's ``rllib`` extra leaves the pin out because RLlib's new API stack runs
    on the gymnasium versions hlmat supports (``tests/test_rllib.py`` trains PPO on the installed one).
    """
    import gymnasium

    try:
        ray_version = importlib.metadata.version("ray")
        pins = [r for r in importlib.metadata.requires("ray") or []
                if r.replace(" ", "").startswith("gymnasium==") and "rllib" in r]
    except importlib.metadata.PackageNotFoundError:
        return None
    wanted = {pin.split(";")[0].split("==")[1].strip() for pin in pins} - {gymnasium.__version__}
    if not wanted:
        return None
    return (f"ray {ray_version}'s rllib extra pins gymnasium=={', '.join(sorted(wanted))}; measured with "
            f"gymnasium {gymnasium.__version__} (hlmat's rllib extra leaves the pin out)")


def run_info() -> dict[str, Any]:
    """Facts about the machine and the software a run's numbers depend on (for the report's header).

    Returns:
        A JSON-ready dict: CPU count, load averages, Python, gymnasium, numpy and ray versions, the thread
        setting, how steps are counted, and ``rllib_note`` (:func:`rllib_gymnasium_note`, or None).
    """
    import gymnasium

    try:
        ray_version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        ray_version = None
    return {
        "cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(), "gymnasium": gymnasium.__version__, "numpy": np.__version__,
        "ray": ray_version, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "counting": COUNTING,
        "rllib_note": rllib_gymnasium_note() if ray_version else None,
    }


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=False, dynamic_ncols=True,
                file=sys.stderr)


def cpu_seconds(pids: Sequence[int] = ()) -> float | None:
    """CPU seconds (user + system) used so far by this process and the live processes ``pids`` (read from
    ``/proc``), or None where ``/proc`` cannot be read (not Linux)."""
    total = time.process_time()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


# ---------------------------------------------------------------------------------------------- one env


def _module_env_and_policy(spec: str, env_kwargs: dict, seed: int) -> tuple[Any, Callable[[], Any]]:
    """The ``module`` policy in one env: :func:`agents.rllib.env.make_env`'s env (keeping its last
    observation) and an action function that samples from an untrained
    :class:`agents.rllib.module.ClickCNNModule` (so its forward pass is timed, as in RLlib's env runners)."""
    import gymnasium as gym

    from agents.rllib.env import env_config, make_env
    from agents.rllib.module import ClickCNNModule
    from agents.rllib.rollout import module_action

    class LastObservation(gym.Wrapper):
        """Keeps the latest observation for the action function."""

        def reset(self, **kwargs: Any) -> Any:
            self.last, info = self.env.reset(**kwargs)
            return self.last, info

        def step(self, action: Any) -> Any:
            out = self.env.step(action)
            self.last = out[0]
            return out

    env = LastObservation(make_env(env_config(dataset=spec, env_kwargs=env_kwargs)))
    module = ClickCNNModule(observation_space=env.observation_space, action_space=env.action_space,
                            model_config={})
    rng = np.random.default_rng(seed)
    return env, lambda: module_action(module, env.last, greedy=False, rng=rng)


def _measure_single(spec: str, policy: str, steps: int, warmup: int, seed: int, env_kwargs: dict,
                    desc: str, progress: bool) -> dict[str, Any]:
    import gymnasium as gym

    import hlmat_env  # noqa: F401 - registers the env

    t0 = time.perf_counter()
    if policy == "module":
        env, act = _module_env_and_policy(spec, env_kwargs, seed)
    else:
        env = gym.make(ENV_ID, dataset=spec, **env_kwargs)
        act = env.action_space.sample if policy == "random" else env.unwrapped.expert_action
    env.action_space.seed(seed)
    env.reset(seed=seed)
    setup_s = time.perf_counter() - t0

    def loop(n: int, bar: Any = None) -> tuple[int, int, float]:
        done_steps = resets = 0
        iou_sum = 0.0
        while done_steps < n:
            _, _, terminated, truncated, info = env.step(act())
            done_steps += 1
            iou_sum += info["iou"]
            if terminated or truncated:
                env.reset()
                resets += 1
            if bar is not None:
                bar.update(1)
        return done_steps, resets, iou_sum

    try:
        loop(warmup)
        with _bar(steps, desc, progress) as bar:
            c0, t0 = cpu_seconds(), time.perf_counter()
            n, resets, iou_sum = loop(steps, bar)
            wall, c1 = time.perf_counter() - t0, cpu_seconds()
    finally:
        env.close()
    return {"num_envs": 1, "env_steps": n, "step_calls": n, "resets": resets, "wall_s": wall,
            "setup_s": setup_s, "mean_iou": iou_sum / n, "cpu_s": None if c1 is None else c1 - c0}


# ---------------------------------------------------------------------------------------------- vector envs


def _measure_vector(spec: str, policy: str, mode: str, num_envs: int, steps: int, warmup: int, seed: int,
                    env_kwargs: dict, desc: str, progress: bool) -> dict[str, Any]:
    import gymnasium as gym

    import hlmat_env  # noqa: F401 - registers the env

    t0 = time.perf_counter()
    envs = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode=mode, dataset=spec, **env_kwargs)
    try:
        envs.action_space.seed(seed)
        envs.reset(seed=seed)
        setup_s = time.perf_counter() - t0
        autoreset = str(getattr(envs, "metadata", {}).get("autoreset_mode", "NextStep"))
        next_step = "next" in autoreset.lower().replace("_", "")  # AutoresetMode.NEXT_STEP / "NextStep"
        prev_done = np.zeros(num_envs, bool)

        def act() -> np.ndarray:
            if policy == "random":
                return envs.action_space.sample()
            return np.stack([np.asarray(a) for a in envs.call("expert_action")])

        def loop(n: int, bar: Any = None) -> tuple[int, int, int, float]:
            nonlocal prev_done
            done_steps = resets = calls = 0
            iou_sum = 0.0
            while done_steps < n:
                _, _, terminated, truncated, info = envs.step(act())
                calls += 1
                done = np.asarray(terminated) | np.asarray(truncated)
                live = ~prev_done if next_step else np.ones(num_envs, bool)
                k = int(live.sum())
                done_steps += k
                resets += int(prev_done.sum()) if next_step else int(done.sum())
                iou_sum += float(np.asarray(info["iou"], float)[live].sum())
                prev_done = done
                if bar is not None:
                    bar.update(k)
            return done_steps, resets, calls, iou_sum

        loop(warmup)
        pids = [p.pid for p in getattr(envs, "processes", [])]  # async workers
        with _bar(steps, desc, progress) as bar:
            c0, t0 = cpu_seconds(pids), time.perf_counter()
            n, resets, calls, iou_sum = loop(steps, bar)
            wall, c1 = time.perf_counter() - t0, cpu_seconds(pids)
    finally:
        envs.close()
    return {"num_envs": num_envs, "env_steps": n, "step_calls": calls, "resets": resets, "wall_s": wall,
            "setup_s": setup_s, "mean_iou": iou_sum / max(n, 1), "autoreset_mode": autoreset,
            "cpu_s": None if c0 is None or c1 is None else c1 - c0}


# ---------------------------------------------------------------------------------------------- RLlib


def _oracle_wrapper_cls() -> type:
    import gymnasium as gym

    class OracleActions(gym.ActionWrapper):
        """Replaces every action by the robot user's (``expert_action``) before it reaches the env."""

        def action(self, action: Any) -> np.ndarray:
            return self.env.unwrapped.expert_action()

    return OracleActions


def rllib_env_creator(config: Any) -> Any:
    """The env an RLlib env runner builds: ``HLMATEnv-v0`` without the caption (RLlib cannot batch ``Text``
    observations), with the robot user's actions in place of RLlib's when ``config["policy"] == "oracle"``.

    Args:
        config: RLlib's ``EnvContext`` (a dict): ``dataset`` (spec), ``policy`` and ``env_kwargs`` (dict).

    Returns:
        The wrapped env.
    """
    import gymnasium as gym

    import hlmat_env  # noqa: F401 - registers the env in the runner's process

    _one_thread()
    env = gym.make(ENV_ID, dataset=config["dataset"], **dict(config.get("env_kwargs") or {}))
    if config.get("policy") == "oracle":
        env = _oracle_wrapper_cls()(env)
    return gym.wrappers.FilterObservation(env, ["image", "mask"])


def _measure_rllib(spec: str, policy: str, runners: int, steps: int, warmup: int, seed: int, env_kwargs: dict,
                   desc: str, progress: bool) -> dict[str, Any]:
    from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
    from ray.rllib.env.env_runner_group import EnvRunnerGroup

    group = None
    try:
        if policy == "module":  # agents.rllib's env and an untrained ClickCNNModule choose the actions
            from agents.rllib.config import ppo_config

            config = ppo_config(spec, runners, env_kwargs=env_kwargs, seed=seed)
        else:  # no RL module: runners sample with random_actions=True (oracle: replaced by the wrapper)
            config = AlgorithmConfig().environment(
                env=rllib_env_creator,
                env_config={"dataset": spec, "policy": policy, "env_kwargs": env_kwargs})
        config = (config.env_runners(num_env_runners=runners, num_envs_per_env_runner=1,
                                     num_cpus_per_env_runner=1)
                  .fault_tolerance(restart_failed_env_runners=False)
                  .debugging(seed=seed))
        t0 = time.perf_counter()
        group = EnvRunnerGroup(config=config, local_env_runner=False)
        setup_s = time.perf_counter() - t0
        per_runner = math.ceil(steps / runners)
        random_actions = policy != "module"

        def sample(n: int) -> Callable[[Any], tuple[int, int, float]]:
            def fn(runner: Any) -> tuple[int, int, float]:
                episodes = runner.sample(num_timesteps=n, random_actions=random_actions)
                ious = sum(float(i["iou"]) for e in episodes if len(e) for i in e.get_infos()[-len(e):])
                return sum(len(e) for e in episodes), sum(bool(e.is_done) for e in episodes), ious
            return fn

        def run(n: int) -> list[tuple[int, int, float]]:
            out = group.foreach_env_runner(sample(n), local_env_runner=False)
            if len(out) != runners:
                raise RuntimeError(f"{runners - len(out)} of {runners} env runners failed (see ray's logs)")
            return out

        run(max(1, math.ceil(warmup / runners)))
        pids = group.foreach_env_runner(lambda runner: os.getpid(), local_env_runner=False)
        with _bar(per_runner * runners, desc, progress) as bar:
            c0, t0 = cpu_seconds(pids), time.perf_counter()
            out = run(per_runner)
            wall, c1 = time.perf_counter() - t0, cpu_seconds(pids)
            bar.update(sum(o[0] for o in out))
    finally:
        if group is not None:
            group.stop()
    n = sum(o[0] for o in out)
    return {"num_envs": runners, "env_steps": n, "step_calls": None, "resets": sum(o[1] for o in out),
            "wall_s": wall, "setup_s": setup_s, "mean_iou": sum(o[2] for o in out) / max(n, 1),
            "cpu_s": None if c0 is None or c1 is None else c1 - c0}


# ---------------------------------------------------------------------------------------------- the benchmark


def _row(spec: str, policy: str, mode: str, num_envs: int, status: str = "ok",
         **values: Any) -> dict[str, Any]:
    row = {"dataset": spec, "policy": policy, "mode": mode, "num_envs": num_envs, "status": status,
           "env_steps": None, "step_calls": None, "resets": None, "wall_s": None, "setup_s": None,
           "steps_per_s": None, "resets_per_s": None, "mean_iou": None, "vs_single": None,
           "vs_one_runner": None, "load_avg": None, "cpu_s": None, "cores": None}
    row.update(values)
    if row["wall_s"]:
        row["steps_per_s"] = row["env_steps"] / row["wall_s"]
        row["resets_per_s"] = row["resets"] / row["wall_s"]
        if row["cpu_s"] is not None:
            row["cores"] = row["cpu_s"] / row["wall_s"]
    return row


def _check(name: str, values: Iterable[str], allowed: Sequence[str]) -> list[str]:
    values = list(values)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ValueError(f"{name} must be a non-empty selection of {list(allowed)}, got {values}")
    return values


def measure_env_speed(
    datasets: Sequence[str] = DEFAULT_DATASETS,
    policies: Sequence[str] = DEFAULT_POLICIES,
    modes: Sequence[str] = MODES,
    num_envs: int = 2,
    steps: int = 300,
    seed: int = 0,
    progress: bool = True,
    warmup: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Measure ``HLMATEnv-v0`` env steps per second for every (dataset, policy, mode).

    Every row times ``steps`` env steps (vector modes stop at the first ``step`` call that reaches it, so
    they may run up to ``num_envs - 1`` more) after ``warmup`` untimed ones, in a fresh env (or vector env,
    or env runner group) built untimed; ratios are to the ``single`` row of the same dataset and policy.

    Args:
        datasets: dataset specs; a relative ``folder:`` path is also looked up from the repository root, and a
            dataset that cannot be built (e.g. GrabCut absent) gives ``not run`` rows.
        policies: any of ``"random"`` (seeded ``action_space.sample()``), ``"oracle"`` (the robot user) and
            ``"module"`` (an untrained RLlib module on :mod:`agents.rllib`'s env; ``single``/``rllib`` only).
        modes: any of ``"single"``, ``"sync"``, ``"async"`` and ``"rllib"`` (two rows: one env runner and
            ``num_envs`` runners; ``not run`` where RLlib is unavailable, see :func:`rllib_problem`).
        num_envs: sub-envs of the vector envs, env runners of the second RLlib row.
        steps: timed env steps per row.
        seed: seeds the envs' resets and the action spaces.
        progress: show a tqdm bar (with its rate) per row on stderr.
        warmup: untimed env steps before each timed run (default: ``max(num_envs, steps // 10)``).
        env_kwargs: extra ``HLMATEnv`` keyword arguments (``max_clicks``, ``segmenter``...), the same in
            every mode.

    Returns:
        One dict per row: ``dataset``, ``policy``, ``mode``, ``num_envs``, ``status`` (``"ok"`` or
        ``"not run: <reason>"``), ``env_steps``, ``step_calls``, ``resets``, ``wall_s``, ``setup_s``,
        ``steps_per_s``, ``resets_per_s``, ``mean_iou`` (mean ``info["iou"]`` over the timed steps),
        ``vs_single`` (steps/s over the ``single`` row's), ``vs_one_runner`` (RLlib rows: over the one-runner
        row's), ``cpu_s`` and ``cores`` (CPU seconds this process and the async workers or RLlib env runners
        used in the timed loop, and that over ``wall_s``: how many cores the mode really got; None without
        ``/proc``) and ``load_avg`` (the machine's 1-minute load average when the row ended: other jobs'
        load lowers the vector modes' ratios). Rows come in dataset, policy, mode order.

    Raises:
        ValueError: an unknown policy or mode, or ``num_envs``/``steps`` below 1.
    """
    policies = _check("policies", policies, POLICIES)
    modes = _check("modes", modes, MODES)
    if num_envs < 1 or steps < 1:
        raise ValueError(f"num_envs and steps must be >= 1, got {num_envs} and {steps}")
    warmup = max(num_envs, steps // 10) if warmup is None else max(0, int(warmup))
    env_kwargs = dict(env_kwargs or {})
    _one_thread()
    rllib_reason = rllib_problem() if "rllib" in modes or "module" in policies else None
    rows: list[dict[str, Any]] = []
    try:
        _measure_all(datasets, policies, modes, num_envs, steps, warmup, seed, env_kwargs, progress,
                     rllib_reason, rows)
    finally:
        _stop_ray()
    return rows


_RAY_STARTED: list[bool] = []  # non-empty while a ray instance started here runs (started once, for all rows)


def _start_ray(num_cpus: int) -> None:
    import ray

    if not ray.is_initialized():  # a user's own ray session is used as it is, and left running
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        _RAY_STARTED.append(True)


def _stop_ray() -> None:
    if _RAY_STARTED:
        import ray

        ray.shutdown()
        _RAY_STARTED.clear()


def _measure_all(datasets: Sequence[str], policies: list[str], modes: list[str], num_envs: int, steps: int,
                 warmup: int, seed: int, env_kwargs: dict, progress: bool, rllib_reason: str | None,
                 rows: list[dict[str, Any]]) -> None:
    for spec in datasets:
        problem = dataset_problem(spec)
        resolved = resolve_dataset(spec)
        for policy in policies:
            group: list[dict[str, Any]] = []
            for mode in modes:
                counts = [1] if mode == "single" else ([1, num_envs] if mode == "rllib" else [num_envs])
                for n in dict.fromkeys(counts):
                    desc = f"{spec} {policy} {mode} x{n}"
                    if problem is not None:
                        group.append(_row(spec, policy, mode, n, f"not run: {problem}"))
                        continue
                    if (mode == "rllib" or policy == "module") and rllib_reason is not None:
                        group.append(_row(spec, policy, mode, n, f"not run: {rllib_reason}"))
                        continue
                    if policy == "module" and mode in ("sync", "async"):
                        group.append(_row(spec, policy, mode, n, f"not run: {MODULE_MODES}"))
                        continue
                    try:
                        if mode == "single":
                            r = _measure_single(resolved, policy, steps, warmup, seed, env_kwargs, desc,
                                                progress)
                        elif mode == "rllib":
                            _start_ray(max(2, num_envs))
                            r = _measure_rllib(resolved, policy, n, steps, warmup, seed, env_kwargs, desc,
                                               progress)
                        else:
                            r = _measure_vector(resolved, policy, mode, n, steps, warmup, seed, env_kwargs,
                                                desc, progress)
                    except Exception as e:  # noqa: BLE001 - e.g. an RLlib failure: report it, keep the run
                        if mode != "rllib":
                            raise
                        group.append(_row(spec, policy, mode, n, f"not run: {type(e).__name__}: {e}"))
                        continue
                    group.append(_row(spec, policy, mode, load_avg=os.getloadavg()[0], **r))
            base = next((r["steps_per_s"] for r in group if r["mode"] == "single" and r["steps_per_s"]), None)
            one = next((r["steps_per_s"] for r in group
                        if r["mode"] == "rllib" and r["num_envs"] == 1 and r["steps_per_s"]), None)
            for r in group:
                if r["steps_per_s"] and base:
                    r["vs_single"] = r["steps_per_s"] / base
                if r["mode"] == "rllib" and r["steps_per_s"] and one:
                    r["vs_one_runner"] = r["steps_per_s"] / one
            rows.extend(group)


# ---------------------------------------------------------------------------------------------- reports


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown_table(rows: Sequence[dict[str, Any]], info: dict[str, Any] | None = None) -> str:
    """The rows of :func:`measure_env_speed` as a markdown table (with a header of run facts when given).

    Args:
        rows: rows from :func:`measure_env_speed`.
        info: :func:`run_info`'s dict, printed above the table (optional; a ``load_avg_end`` entry, the load
            averages at the end of the run, is printed too).

    Returns:
        Markdown text: an optional header, the table and notes (RLlib runner ratios, rows not run).
    """
    lines = []
    if info:
        load = " / ".join(map(str, info["load_avg"]))
        if info.get("load_avg_end"):
            load += f" at the start, {' / '.join(map(str, info['load_avg_end']))} at the end"
        lines += [f"{info['cpus']} CPUs, load average {load} (1, 5, 15 min); "
                  f"Python {info['python']}, gymnasium {info['gymnasium']}, ray {info['ray']}, "
                  f"OMP_NUM_THREADS={info['OMP_NUM_THREADS']}. {info['counting']}; "
                  "cores = CPU seconds used by the process and its async workers or env runners per wall "
                  "second; "
                  "load = the 1-minute load average when the row ended.", ""]
    lines += ["| dataset | policy | mode | envs | env steps | resets | wall s | steps/s | resets/s "
              "| mean IoU | x single | cores | load |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes, not_run = [], {}
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['dataset']} | {r['policy']} | {r['mode']} | {r['num_envs']} "
                         "| – | – | – | – | – | – | – | – | – |")
            not_run.setdefault(r["status"], []).append(r)
            continue
        lines.append(
            f"| {r['dataset']} | {r['policy']} | {r['mode']} | {r['num_envs']} | {r['env_steps']} "
            f"| {r['resets']} | {r['wall_s']:.2f} | {r['steps_per_s']:.1f} | {r['resets_per_s']:.1f} "
            f"| {_fmt(r['mean_iou'], '.3f')} | {_fmt(r['vs_single'], '.2f')} | {_fmt(r.get('cores'), '.2f')} "
            f"| {_fmt(r.get('load_avg'), '.1f')} |")
        if r["mode"] == "rllib" and r["num_envs"] > 1 and r["vs_one_runner"]:
            notes.append(f"{r['dataset']} {r['policy']}: RLlib {r['num_envs']} env runners = "
                         f"{r['vs_one_runner']:.2f}x one env runner")
    if info and info.get("rllib_note") and any(r["mode"] == "rllib" and r["status"] == "ok" for r in rows):
        notes.append(info["rllib_note"])
    for status, group in not_run.items():
        modes = sorted({r["mode"] for r in group})
        specs = sorted({r["dataset"] for r in group})
        where = (f"{', '.join(modes)} rows" if len(specs) > 1 or len(group) < 2
                 else f"{specs[0]}, {', '.join(modes)} rows")
        notes.append(f"{where}: {status}")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def plot_speed(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """Bar plot of env steps/s per mode, one panel per dataset, one bar group per policy; saved to ``path``.

    Args:
        rows: rows from :func:`measure_env_speed` (rows not run are left out).
        path: the image file to write (PNG by its suffix).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    labels = list(dict.fromkeys(f"{r['mode']} x{r['num_envs']}" for r in rows if r["steps_per_s"]))
    skipped = list(dict.fromkeys(f"{r['mode']} x{r['num_envs']}" for r in rows if not r["steps_per_s"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    width = 0.8 / max(len(labels), 1)
    for ax, spec in zip(axes[0], datasets):
        for j, label in enumerate(labels):
            ys = []
            for policy in policies:
                match = [r for r in rows if r["dataset"] == spec and r["policy"] == policy
                         and f"{r['mode']} x{r['num_envs']}" == label and r["steps_per_s"]]
                ys.append(match[0]["steps_per_s"] if match else 0.0)
            xs = np.arange(len(policies)) + (j - (len(labels) - 1) / 2) * width
            bars = ax.bar(xs, ys, width, label=label)
            for b, y in zip(bars, ys):
                if y:
                    ax.annotate(f"{y:.0f}", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom",
                                fontsize=7)
        ax.set_xticks(np.arange(len(policies)), policies)
        ax.set_title(re.sub(r"^folder:.*/", "folder:.../", spec), fontsize=10)
        ax.set_ylabel("env steps / s")
    if labels:
        axes[0][0].legend(fontsize=8)
    if skipped:
        fig.text(0.01, 0.01, f"not run (see the table): {', '.join(skipped)}", fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.04 if skipped else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
