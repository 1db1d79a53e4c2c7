"""``hlmat bench-segmenters`` on two GrabCut images and two synthetic scenes with a 3-click budget."""
from __future__ import annotations

import json

import pytest

from agents.cli import main


@pytest.mark.slow
def test_bench_segmenters_writes_table_json_and_plot(grabcut_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    sets = [f"folder:{grabcut_dir}", "synthetic:val"]
    rc = main(["bench-segmenters", "--segmenter", "default,graphcut", "--dataset", *sets,
               "--limit", "2", "--max-clicks", "3", "--segmenter-kwargs", '{"graphcut": {"side": 64}}',
               "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert printed.count("| default |") == 2 and printed.count("| graphcut |") == 2 and "NoC@90" in printed
    md = (out / "segmenters.md").read_text()
    assert sum(line.startswith("|---") for line in md.splitlines()) == 2  # one table per set
    assert all(f"### `{spec}`" in md for spec in sets)
    assert (out / "segmenters_curves.png").stat().st_size > 1000
    data = json.loads((out / "segmenters.json").read_text())
    assert data["meta"]["datasets"] == sets and data["meta"]["max_clicks"] == 3
    assert data["meta"]["samples"] == {spec: 2 for spec in sets}
    for spec in sets:
        for name in ("default", "graphcut"):
            res = data["sets"][spec][name]
            assert res["min_cut_backend"] in ("scipy", "pymaxflow")  # the max-flow the times were taken with
            s = res["summary"]
            for key in ("noc85", "noc90", "nof85", "nof90", "miou@1", "miou@3", "miou@5", "miou@10",
                        "miou@20",
                        "sec_per_click_median", "sec_per_click_p90", "set_image_sec_median"):
                assert key in s, key
            assert 1 <= s["noc90"] <= 3 and 0 <= s["miou@3"] <= 1 and s["sec_per_click_median"] > 0
            assert len(res["mean_iou_curve"]) == 3 and len(res["per_sample"]) == 2
            for episode in res["per_sample"].values():
                assert 1 <= len(episode["ious"]) <= 3
                assert len(episode["click_seconds"]) == len(episode["ious"])


def test_bench_segmenters_half(tmp_path):
    """``--half odd`` keeps the samples at odd positions (the held-out half of coco_mval)."""
    out = tmp_path / "bench"
    rc = main(["bench-segmenters", "--segmenter", "default", "--dataset", "synthetic:val", "--half", "odd",
               "--limit", "2", "--max-clicks", "1", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "segmenters.json").read_text())
    ids = list(data["sets"]["synthetic:val"]["default"]["per_sample"])
    from hlmat_env.datasets import make_dataset

    ds = make_dataset("synthetic:val")
    assert ids == [ds[1].sample_id, ds[3].sample_id] and data["meta"]["half"] == "odd"


def test_bench_segmenters_rejects_bad_kwargs(tmp_path):
    with pytest.raises(SystemExit, match="not valid JSON"):
        main(["bench-segmenters", "--segmenter", "default", "--segmenter-kwargs", "{side: 3}",
              "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="not in --segmenter"):
        main(["bench-segmenters", "--segmenter", "default", "--segmenter-kwargs", '{"sam": {}}',
              "--out", str(tmp_path)])
