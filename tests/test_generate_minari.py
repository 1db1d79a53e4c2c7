"""``hlmat generate --format minari``: the dataset read back by ``minari.load_dataset`` holds the JSONL shards'
episodes (masks, actions, rewards), in a fixed order, and a SIGKILL during the generation or during the
Minari build, then ``--resume``, gives the same dataset as an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

minari = pytest.importorskip("minari", reason="minari is not installed (pip install 'hlmat[minari]')")

from agents.tools.generate import GenerateConfig, generate  # noqa: E402
from agents.tools.generate_minari import STAMP_FILE, shard_trajectories  # noqa: E402
from hlmat_env.actions import encode_click  # noqa: E402
from hlmat_env.masks import decode_rle  # noqa: E402
from tests.test_generate import SlowDisc  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATASET_ID = "hlmat/demos-v0"
STARTS = ("empty", "degraded")


def _load(out: Path):
    """The dataset as ``minari.load_dataset`` finds it with a datasets root under the test's tmp folder."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(out / "minari")
    try:
        return minari.load_dataset(DATASET_ID)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _cfg(out: Path, **kw) -> GenerateConfig:
    base = dict(segmenter=SlowDisc(), limit=6, starts=STARTS, seed=3, max_clicks=5, shard_size=3, progress=False,
                format="minari", dataset_id=DATASET_ID)
    return GenerateConfig("synthetic:val", out, **{**base, **kw})


def _episodes(ds) -> list[dict]:
    """Every stored field of every episode, plus its metadata, as plain arrays and lists."""
    meta = list(ds.storage.get_episode_metadata(range(ds.total_episodes)))
    eps = []
    for ep, m in zip(ds.iterate_episodes(), meta):
        eps.append({"image": ep.observations["image"], "mask": ep.observations["mask"],
                    "caption": list(ep.observations["caption"]), "actions": ep.actions, "rewards": ep.rewards,
                    "terminations": ep.terminations, "truncations": ep.truncations,
                    "iou": np.asarray(ep.infos["iou"]), "meta": {k: m[k] for k in ("episode_id", "seed")}})
    return eps


def _assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], np.ndarray):
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)
            else:
                assert x[k] == y[k], k


def test_dataset_holds_the_jsonl_episodes(tmp_path):
    out = tmp_path / "run"
    report = generate(_cfg(out))
    assert report.errors == 0 and report.written == report.minari_episodes == 12
    assert (out / "minari" / DATASET_ID / "data").is_dir() and not (out / "minari.tmp").exists()
    ds = _load(out)
    assert ds.storage.metadata["jpeg_encoding"] is False and ds.storage.metadata["data_format"] == "hdf5"
    trajs = shard_trajectories(out, STARTS)
    # fixed order: sample index, then the start states in the order given
    assert [(t.index, t.start) for t in trajs] == [(i, s) for i in range(6) for s in STARTS]
    eps = _episodes(ds)
    assert [e["meta"]["episode_id"] for e in eps] == [t.episode_id for t in trajs]
    for t, e in zip(trajs, eps):
        assert e["meta"]["seed"] == t.seed
        n = len(t.clicks)
        finish = [[2, 0, 0]] if len(e["actions"]) == n + 1 else []
        assert len(e["actions"]) == n + len(finish) and (finish or n == 5)  # finish, or the 5-click budget
        want = [encode_click(s.click, t.width, t.height, 1000) for s in t.clicks] + finish
        np.testing.assert_array_equal(e["actions"], np.asarray(want, dtype=np.int64))
        ious = [t.start_iou] + [s.iou for s in t.clicks]
        np.testing.assert_allclose(e["rewards"][:n], np.diff(ious), atol=1e-9)
        np.testing.assert_allclose(e["iou"][: n + 1], ious, atol=1e-9)
        masks = [t.start_mask] + [s.mask for s in t.clicks]
        for k, rle in enumerate(masks):
            m = np.zeros((t.height, t.width), bool) if rle is None else decode_rle(rle)
            want_mask = cv2.resize(m.astype(np.uint8) * 255, (128, 128), interpolation=cv2.INTER_NEAREST)
            np.testing.assert_array_equal(e["mask"][k, ..., 0], want_mask)  # lossless: the JSONL masks
        assert e["caption"] == [t.caption] * (len(e["actions"]) + 1)
    # a resume that adds nothing leaves the dataset as it is (no rebuild)
    stamp = (out / STAMP_FILE).read_text()
    again = generate(_cfg(out, resume=True))
    assert (again.written, again.already_done, again.minari_episodes) == (0, 12, 12)
    assert again.minari_seconds < report.minari_seconds and (out / STAMP_FILE).read_text() == stamp


KILL_SCRIPT = """
import sys
from agents.tools.generate import GenerateConfig, generate
from tests.test_generate import SlowDisc
generate(GenerateConfig("synthetic:val", sys.argv[1], segmenter=SlowDisc(delay=0.05), limit=6,
                        starts=("empty", "degraded"), seed=3, max_clicks=5, shard_size=3, progress=False, format="minari",
                        dataset_id="hlmat/demos-v0"))
"""


def _kill_when(out: Path, ready) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)], cwd=REPO, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while not ready():
        assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, "the kill point was not reached within 180 s"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_dataset(tmp_path):
    reference = tmp_path / "reference"
    generate(_cfg(reference))
    ref = _episodes(_load(reference))
    assert len(ref) == 12

    during_generation = tmp_path / "killed_generating"
    _kill_when(during_generation, lambda: any(during_generation.glob("part-*.jsonl")))
    assert not (during_generation / "minari").exists()
    report = generate(_cfg(during_generation, resume=True))
    assert report.written + report.already_done == 12 and report.already_done > 0
    _assert_same(_episodes(_load(during_generation)), ref)

    during_build = tmp_path / "killed_building"
    _kill_when(during_build, lambda: (during_build / "minari.tmp").exists())
    assert not (during_build / "minari").exists() and not (during_build / STAMP_FILE).exists()
    report = generate(_cfg(during_build, resume=True))
    assert (report.written, report.already_done, report.minari_episodes) == (0, 12, 12)
    assert not (during_build / "minari.tmp").exists()
    _assert_same(_episodes(_load(during_build)), ref)


def test_a_resume_that_adds_episodes_rebuilds_the_dataset(tmp_path):
    out = tmp_path / "run"
    generate(_cfg(out))
    first = json.loads((out / STAMP_FILE).read_text())
    shard = sorted(out.glob("part-*.jsonl"))[-1]
    lines = shard.read_text().splitlines()
    shard.write_text("\n".join(lines[:-1]) + "\n")  # as if the last episode had failed
    report = generate(_cfg(out, resume=True))
    assert report.written == 1 and report.minari_episodes == 12
    assert json.loads((out / STAMP_FILE).read_text()) == first
    reference = tmp_path / "reference"
    generate(_cfg(reference))
    _assert_same(_episodes(_load(out)), _episodes(_load(reference)))


def test_cli_format_minari(tmp_path, capsys):
    import argparse

    from agents.cli import generate as command

    parser = argparse.ArgumentParser(prog="hlmat")
    command.add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(["generate", "--dataset", "synthetic:val", "--out", str(out), "--limit", "2",
                              "--max-clicks", "3", "--format", "minari", "--dataset-id", DATASET_ID, "--no-progress"])
    assert command.run(args) == 0
    said = capsys.readouterr().out
    assert "minari: 2 episodes" in said and f"MINARI_DATASETS_PATH={out}/minari" in said
    ds = _load(out)
    assert ds.total_episodes == 2
    env = ds.recover_environment()  # one dataset spec and segmenter name: the env spec travels with the data
    assert env.spec.kwargs["dataset"] == "synthetic:val" and env.spec.kwargs["segmenter"] == "default"
    env.close()


def test_bad_samples_stay_out_and_the_folder_exports(tmp_path):
    """A sample with an empty mask is logged to errors.jsonl, kept out of the dataset, and the folder (shards
    plus errors.jsonl) still reads as trajectories for ``hlmat export``."""
    from PIL import Image

    from hlmat_env.exports_minari import export_minari, load_minari
    from hlmat_env.trajectories import iter_trajectories

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for n in range(3):
        Image.fromarray(np.full((24, 24, 3), 40 * n + 20, np.uint8)).save(root / "images" / f"s{n}.png")
        mask = np.zeros((24, 24), np.uint8)
        if n != 1:
            mask[5:15, 6:16] = 255
        Image.fromarray(mask).save(root / "masks" / f"s{n}.png")
    out = tmp_path / "run"
    report = generate(GenerateConfig(f"folder:{root}", out, segmenter=SlowDisc(), starts=("empty",), max_clicks=3,
                                     progress=False, format="minari", dataset_id=DATASET_ID))
    assert (report.written, report.errors, report.minari_episodes) == (2, 1, 2)
    assert "EmptyTarget" in (out / "errors.jsonl").read_text()
    assert [m["episode_id"] for m in _load(out).storage.get_episode_metadata(range(2))] == ["s0#empty", "s2#empty"]
    trajs = list(iter_trajectories(out))  # errors.jsonl is not a trajectory file
    assert sorted(t.episode_id for t in trajs) == ["s0#empty", "s2#empty"]
    assert export_minari(trajs, tmp_path / "exported", segmenter=SlowDisc(), max_clicks=3) == 2
    assert load_minari(tmp_path / "exported").total_episodes == 2
