"""The generation engine: SIGKILL + resume, determinism across workers, bad samples, settings checks, Ray."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agents.tools.generate import GenerateConfig, done_episode_ids, generate, salvage_partial_shards
from hlmat_env.errors import HLMATError
from hlmat_env.segmenters import Prediction

REPO = Path(__file__).resolve().parents[1]


class SlowDisc:
    """Test double (importable by spawned workers without torch): clicks paint/erase discs, with a delay."""

    name = "slowdisc"

    def __init__(self, radius: int = 4, delay: float = 0.0):
        self.radius, self.delay = radius, delay

    def set_image(self, image):
        self.shape = image.shape[:2]

    def predict(self, clicks, prev=None, box=None):
        time.sleep(self.delay)
        yy, xx = np.mgrid[0 : self.shape[0], 0 : self.shape[1]]
        m = np.zeros(self.shape, bool)
        for c in clicks:
            disc = (yy - c.y) ** 2 + (xx - c.x) ** 2 <= self.radius**2
            m = m | disc if c.positive else m & ~disc
        return Prediction(m)


def _episodes(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(out.glob("part-*.jsonl")) for line in f.read_text().splitlines()]


def _by_id(out: Path) -> dict[str, dict]:
    eps = _episodes(out)
    ids = [e["episode_id"] for e in eps]
    assert len(ids) == len(set(ids)), "an episode was written twice"
    return {e["episode_id"]: e for e in eps}


KILL_SCRIPT = """
import sys
from agents.tools.generate import GenerateConfig, generate
from tests.test_generate import SlowDisc
generate(GenerateConfig("synthetic:val", sys.argv[1], segmenter=SlowDisc(delay=0.01), limit=12,
                        starts=("empty", "degraded"), seed=3, shard_size=3, progress=False))
"""


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(killed)], cwd=REPO, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(killed.glob("part-*.jsonl")):
        assert proc.poll() is None, f"generation ended before the kill: {proc.stderr.read().decode()[-2000:]}"
        assert time.time() < deadline, "no shard appeared within 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < len(done_episode_ids(killed)) < 24, "the kill must interrupt the run mid-way"

    cfg = dict(segmenter=SlowDisc(), limit=12, starts=("empty", "degraded"), seed=3, shard_size=3, progress=False)
    report = generate(GenerateConfig("synthetic:val", killed, resume=True, workers=2, **cfg))
    assert report.errors == 0 and report.written + report.already_done == 24
    reference = tmp_path / "reference"
    generate(GenerateConfig("synthetic:val", reference, **cfg))
    resumed, ref = _by_id(killed), _by_id(reference)
    assert set(resumed) == set(ref) and len(ref) == 24  # every sample x start exactly once
    for eid, ep in ref.items():
        assert resumed[eid]["clicks"] == ep["clicks"] and resumed[eid]["start_mask"] == ep["start_mask"]
    assert not list(killed.glob("*.tmp"))
    again = generate(GenerateConfig("synthetic:val", killed, resume=True, **cfg))
    assert (again.written, again.already_done) == (0, 24)


def test_salvage_keeps_complete_lines_of_a_partial_shard(tmp_path):
    lines = [json.dumps({"episode_id": f"e{i}"}) for i in range(3)]
    (tmp_path / "part-00004.jsonl.tmp").write_text("\n".join(lines) + '\n{"episode_id": "torn')
    assert salvage_partial_shards(tmp_path) == 3
    assert done_episode_ids(tmp_path) == {"e0", "e1", "e2"} and not list(tmp_path.glob("*.tmp"))


def test_bad_samples_are_logged_and_skipped(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for name in ("good", "corrupt", "empty"):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        mask = np.zeros((30, 40), np.uint8)
        if name != "empty":
            mask[10:20, 10:25] = 255
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    (root / "images" / "corrupt.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    report = generate(GenerateConfig(f"folder:{root}", out, segmenter=SlowDisc(radius=3), progress=False))
    assert (report.written, report.errors) == (1, 2)
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    text = " ".join(e["error"] for e in errors)
    assert "corrupt.png" in text and "EmptyTarget" in text and "'empty'" in text
    assert list(_by_id(out)) == ["good#empty"]


def test_refuses_to_mix_runs(tmp_path):
    cfg = dict(segmenter=SlowDisc(), limit=2, progress=False)
    report = generate(GenerateConfig("synthetic:val", tmp_path, **cfg))
    eps = list(_by_id(tmp_path).values())  # the report's episode statistics are those of the written files
    assert report.mean_kept_clicks == pytest.approx(np.mean([len(e["clicks"]) for e in eps]))
    assert report.mean_final_iou == pytest.approx(np.mean([e["clicks"][-1]["iou"] for e in eps]))
    with pytest.raises(HLMATError, match="--resume"):
        generate(GenerateConfig("synthetic:val", tmp_path, **cfg))
    with pytest.raises(HLMATError, match="seed"):
        generate(GenerateConfig("synthetic:val", tmp_path, resume=True, seed=9, **cfg))
    with pytest.raises(ValueError, match="start states"):
        GenerateConfig("synthetic:val", tmp_path, starts=("boxed",))
    record = tmp_path / "generate.json"  # same segmenter name, other code: refused too
    record.write_text(json.dumps({**json.loads(record.read_text()), "segmenter_version": "0ld"}))
    with pytest.raises(HLMATError, match="segmenter_version"):
        generate(GenerateConfig("synthetic:val", tmp_path, resume=True, **cfg))


def test_cli_generate(tmp_path, capsys):
    import argparse

    from agents.cli import generate as command
    from hlmat_env.segmenters import SEGMENTERS, register_segmenter

    if "slowdisc" not in SEGMENTERS:
        register_segmenter("slowdisc", SlowDisc)
    parser = argparse.ArgumentParser(prog="hlmat")
    command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["generate", "--dataset", "synthetic:val", "--segmenter", "slowdisc", "--out",
                              str(tmp_path), "--limit", "3", "--start", "empty,box", "--max-clicks", "5",
                              "--tau-stop", "0.9", "--shard-size", "4", "--no-progress"])
    assert command.run(args) == 0
    assert "generated 6 episodes" in capsys.readouterr().out
    eps = _by_id(tmp_path)
    assert len(eps) == 6 and all(len(e["clicks"]) <= 5 and e["segmenter"] == "slowdisc" for e in eps.values())
    assert {e["start"] for e in eps.values()} == {"empty", "box"} and len(list(tmp_path.glob("part-*.jsonl"))) == 2


@pytest.mark.slow
def test_ray_backend_matches_local(tmp_path):
    pytest.importorskip("ray")
    cfg = dict(segmenter=SlowDisc(), limit=4, seed=5, progress=False)
    generate(GenerateConfig("synthetic:val", tmp_path / "local", **cfg))
    report = generate(GenerateConfig("synthetic:val", tmp_path / "ray", backend="ray", workers=2, **cfg))
    assert report.written == 4
    local, ray_ = _by_id(tmp_path / "local"), _by_id(tmp_path / "ray")
    assert local == ray_
