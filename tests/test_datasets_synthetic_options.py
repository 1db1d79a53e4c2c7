"""The ``synthetic[:SPLIT][?size=N&seed=S]`` spec: more (or fewer) scenes, other seeds, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from hlmat_env.datasets import make_dataset
from hlmat_env.errors import DatasetError


def test_size_extends_the_split_with_the_same_first_scenes():
    small, big = make_dataset("synthetic:train"), make_dataset("synthetic:train?size=2500")
    assert len(big) == 2500 and big.name == "synthetic:train?size=2500"
    assert np.array_equal(small[7].image, big[7].image)
    assert not np.array_equal(big[2400].image, big[400].image)


def test_seed_changes_the_scenes():
    a, b = make_dataset("synthetic:val"), make_dataset("synthetic:val?seed=3")
    assert b.name == "synthetic:val?seed=3" and not np.array_equal(a[0].image, b[0].image)


@pytest.mark.parametrize("spec", ["synthetic:train?foo=1", "synthetic:train?size=x", "synthetic:train?size=0",
                                  "synthetic:train?size"])
def test_bad_options_name_the_problem(spec):
    with pytest.raises(DatasetError, match="size|option"):
        make_dataset(spec)


def test_objects_sets_how_many_objects_a_scene_has():
    one = make_dataset("synthetic:val?objects=1")
    assert one.name == "synthetic:val?objects=1" and len(one) == 200
    for i in range(20):
        s = one[i]
        assert " of " not in s.caption and "above" not in s.caption and "below" not in s.caption  # no anchor
        assert s.target.sum() >= 60
    # the default range is the standard scenes: the spec that names it gives the same samples and name
    std, named = make_dataset("synthetic:val"), make_dataset("synthetic:val?objects=3-6")
    assert named.name == "synthetic:val" and np.array_equal(std[5].image, named[5].image)
    assert make_dataset("synthetic:val?objects=2-3").name == "synthetic:val?objects=2-3"


@pytest.mark.parametrize("spec", ["synthetic:val?objects=0", "synthetic:val?objects=4-2", "synthetic:val?objects=a",
                                  "synthetic:val?objects=1-99"])
def test_bad_object_ranges_are_refused(spec):
    with pytest.raises(DatasetError, match="objects"):
        make_dataset(spec)
