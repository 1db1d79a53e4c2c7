"""Settings records: reused files must come from the same recipe and the same segmenter code."""
from __future__ import annotations

import pytest

from agents.tools.settings_record import check_record, write_record
from hlmat_env.errors import HLMATError
from hlmat_env.segmenters import make_segmenter, segmenter_version


def test_segmenter_version_follows_the_code_not_the_instance():
    default = segmenter_version("default")
    assert default == segmenter_version("graphcut") == segmenter_version(make_segmenter())
    assert segmenter_version("default") != segmenter_version("grabcut")
    assert segmenter_version("auto") not in (segmenter_version("default"), segmenter_version("sam"))
    with pytest.raises(HLMATError, match="segmenter"):
        segmenter_version("nope")


def test_check_record(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(HLMATError, match="no settings record"):
        check_record(path, {"a": 1}, "the cache")
    write_record(path, {"a": 1, "b": (2, 3), "c": object()})
    check_record(path, {"a": 1, "b": [2, 3], "c": "ignored"}, "the cache", keys=["a", "b"])
    with pytest.raises(HLMATError, match=r"'a': \(1, 2\)"):
        check_record(path, {"a": 2, "b": [2, 3]}, "the cache", keys=["a", "b"])
    with pytest.raises(HLMATError, match="'c'"):
        check_record(path, {"a": 1, "b": [2, 3]}, "the cache")
