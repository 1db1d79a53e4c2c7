"""A bounded cache of per-image embeddings: in memory (LRU) and optionally on disk.

The costly part of a promptable segmenter such as SAM is the image encoder (ViT-B: ~0.1 s on a GPU, tens of
seconds on a laptop CPU); prompts are cheap. Episodes of HLMAT revisit the same images many times (several
episodes, tree search, StaR+ rollouts), so the embedding is computed once per (image, model) and reused.

Keys are SHA-256 digests of the image bytes, shape and dtype plus a model identity string (model type and
checkpoint identity), so two models never share entries. Disk entries are ``<key>.npy`` files written
atomically (temporary file in the same folder, then :func:`os.replace`), so concurrent workers sharing one
folder never read a half-written file.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def image_key(image: np.ndarray, model_id: str) -> str:
    """Cache key (64 hex characters) of ``image`` (usually uint8 HxWx3) under model ``model_id``."""
    h = hashlib.sha256()
    h.update(model_id.encode())
    h.update(f"|{image.shape}|{image.dtype.str}|".encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


class EmbeddingCache:
    """LRU cache of float arrays by key, backed by an optional folder of ``.npy`` files.

    Args:
        max_items: how many embeddings to keep in memory (SAM's 256x64x64 float32 embedding is 4 MiB).
        cache_dir: optional folder for the on-disk cache (created if missing); None keeps memory only.
    """

    def __init__(self, max_items: int = 32, cache_dir: str | os.PathLike | None = None):
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = int(max_items)
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items or (self._path(key) is not None and self._path(key).is_file())

    def _path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached array for ``key`` (memory first, then disk), or None. Disk hits are kept in memory."""
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key]
        path = self._path(key)
        if path is not None and path.is_file():
            try:
                value = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                logger.warning("ignoring unreadable embedding cache file %s: %s", path, e)
            else:
                self.disk_hits += 1
                self._remember(key, value)
                return value
        self.misses += 1
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        """Store ``value`` in memory and, when a cache folder is set, atomically on disk."""
        value = np.ascontiguousarray(value)
        self._remember(key, value)
        path = self._path(key)
        if path is None or path.is_file():
            return
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, value, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _remember(self, key: str, value: np.ndarray) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget the in-memory entries (disk files are kept)."""
        self._items.clear()
