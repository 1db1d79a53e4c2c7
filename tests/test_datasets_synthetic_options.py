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
