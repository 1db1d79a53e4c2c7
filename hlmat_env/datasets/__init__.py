"""Datasets: samples (image, target with -1 = ignore, caption, id) loaded lazily, built from specs."""
from hlmat_env.datasets.base import DATASETS, Dataset, Sample, make_dataset, register_dataset
from hlmat_env.datasets import folder as _folder  # noqa: F401  (registers "folder:")
from hlmat_env.datasets import coco as _coco  # noqa: F401  (registers "coco:", "refcoco:", "segagent:")
from hlmat_env.datasets import synthetic as _synthetic  # noqa: F401  (registers "synthetic")
from hlmat_env.datasets import benchmarks as _benchmarks  # noqa: F401  (grabcut:, berkeley:, davis:, coco-mval:, pascalvoc:, sbd:)

__all__ = ["DATASETS", "Dataset", "Sample", "make_dataset", "register_dataset"]
