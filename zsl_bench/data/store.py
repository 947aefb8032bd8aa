"""The harness's feature store: one HDF5 file per dataset, read in batches, never whole.

Layout of ``<root>/<DATASET>/features.h5``:

- ``regions``: ``(N, F, R)`` float16, chunked one image per chunk (random batch reads touch only
  the rows asked for). Optional when the dataset only has pooled features.
- ``pooled``: ``(N, F)`` float32, optional. When absent, pooled features are the mean of
  ``regions`` over R, computed per batch (no second copy on disk or in memory).
- file attributes: ``provenance`` (JSON: source real/simulated, generator version and seed, weights,
  ...), ``format_version``.

Rows follow the dataset's image order (``image_files`` of the proposed-split release).
Writes go to ``features.h5.tmp`` and are renamed at the end: a killed write leaves no store.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

STORE_NAME = "features.h5"
FORMAT_VERSION = 1


class FeatureStore:
    """Read access to a store (or any HDF5 with a compatible dataset, e.g. MSDN's ``feature_map``).

    Args:
        path: the HDF5 file.
        regions_key: dataset holding ``(N, F, R)`` or ``(N, F, h, w)`` region features.
        pooled_key: dataset holding ``(N, F)`` pooled features.
    """

    def __init__(self, path: str | os.PathLike[str], regions_key: str = "regions",
                 pooled_key: str = "pooled") -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"feature store not found: {self.path}")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"{self.path}: not a readable HDF5 file ({exc})") from None
        try:
            self._regions = self._dataset(regions_key)
            self._pooled = self._dataset(pooled_key)
            self._check_layout(regions_key, pooled_key)
            self.provenance: dict[str, Any] = self._read_provenance()
        except BaseException:
            self._h5.close()
            raise

    def _dataset(self, key: str) -> Any:
        import h5py

        if key not in self._h5:
            return None
        ds = self._h5[key]
        if not isinstance(ds, h5py.Dataset):
            raise DataError(f"{self.path}: '{key}' must be a dataset, got an HDF5 {type(ds).__name__.lower()}")
        return ds

    def _check_layout(self, regions_key: str, pooled_key: str) -> None:
        """Every dataset's shape and dtype, alone and against the others (``zsl-bench data verify``)."""
        if self._regions is None and self._pooled is None:
            raise DataError(
                f"{self.path}: no '{regions_key}' or '{pooled_key}' dataset; keys present: {list(self._h5)}"
            )
        for key, ds in ((regions_key, self._regions), (pooled_key, self._pooled)):
            if ds is None:
                continue
            want = "(N, F, R) or (N, F, h, w)" if ds is self._regions else "(N, F)"
            if ds is self._regions and ds.ndim not in (3, 4) or ds is self._pooled and ds.ndim != 2:
                raise DataError(f"{self.path}: '{key}' must be {want}, got {ds.shape}")
            if ds.dtype.kind != "f":
                raise DataError(f"{self.path}: '{key}' must hold floating-point features (float16/32/64), "
                                f"got dtype {ds.dtype}")
            if 0 in ds.shape[1:]:
                raise DataError(f"{self.path}: '{key}' has shape {ds.shape}; a feature width or region count "
                                f"of 0 holds no features")
        if self._regions is not None and self._pooled is not None:
            r, p = self._regions.shape, self._pooled.shape
            if r[0] != p[0]:
                raise DataError(f"{self.path}: '{regions_key}' has {r[0]} rows but '{pooled_key}' has {p[0]}; "
                                f"both hold one row per image")
            if r[1] != p[1]:
                raise DataError(f"{self.path}: '{regions_key}' has feature width {r[1]} but '{pooled_key}' has "
                                f"{p[1]}; pooled features are the regions' mean, of the same width")

    def _read_provenance(self) -> dict[str, Any]:
        raw = self._h5.attrs.get("provenance", "{}")
        try:
            text = raw if isinstance(raw, str) else bytes(raw).decode()
            prov = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{self.path}: attribute 'provenance' is not valid JSON "
                            f"({type(exc).__name__}: {str(exc)[:80]})") from None
        if not isinstance(prov, dict):
            raise DataError(f"{self.path}: attribute 'provenance' must be a JSON object, got {type(prov).__name__}")
        return prov

    # -------------------------------------------------------------- shape
    @property
    def has_regions(self) -> bool:
        return self._regions is not None

    @property
    def stores_pooled(self) -> bool:
        """Pooled features held apart (not computed from the regions on read)."""
        return self._pooled is not None

    @property
    def _main(self) -> Any:
        """The dataset that defines rows, width and dtype (regions if present); never None."""
        ds = self._regions if self._regions is not None else self._pooled
        assert ds is not None  # the constructor requires one of the two
        return ds

    @property
    def num_rows(self) -> int:
        return int(self._main.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self._main.shape[1])

    @property
    def num_regions(self) -> int | None:
        if self._regions is None:
            return None
        return int(np.prod(self._regions.shape[2:]))

    @property
    def grid_side(self) -> int | None:
        r = self.num_regions
        if r is None:
            return None
        side = int(round(r ** 0.5))
        return side if side * side == r else None

    @property
    def dtype(self) -> np.dtype:
        return self._main.dtype

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "rows": self.num_rows, "feature_dim": self.feature_dim,
            "regions": self.num_regions, "regions_dtype": str(self._regions.dtype) if self._regions is not None else None,
            "pooled": self._pooled is not None, "provenance": self.provenance,
        }

    # -------------------------------------------------------------- reads
    def read_regions(self, idx: np.ndarray) -> np.ndarray:
        """Region features of rows ``idx`` (any order, repeats allowed) -> float32 ``[B, F, R]``."""
        if self._regions is None:
            raise DataError(f"{self.path}: holds pooled features only; this method needs region features")
        idx = np.asarray(idx, dtype=np.int64)
        self._check_idx(idx)
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        uniq, inverse = np.unique(sorted_idx, return_inverse=True)
        block = np.empty((len(uniq),) + tuple(self._regions.shape[1:]), dtype=self._regions.dtype)
        # Contiguous runs are read in one call; isolated rows one by one (each row is one chunk).
        start = 0
        while start < len(uniq):
            stop = start + 1
            while stop < len(uniq) and uniq[stop] == uniq[stop - 1] + 1:
                stop += 1
            self._regions.read_direct(block, np.s_[uniq[start]:uniq[stop - 1] + 1], np.s_[start:stop])
            start = stop
        _check_finite(block, uniq, self.path, "regions")
        out = np.empty((len(idx), block.shape[1], int(np.prod(block.shape[2:]))), dtype=np.float32)
        out[order] = block.reshape(len(uniq), block.shape[1], -1)[inverse]
        return out

    def read_pooled(self, idx: np.ndarray) -> np.ndarray:
        """Pooled features of rows ``idx`` -> float32 ``[B, F]`` (mean over regions if not stored)."""
        idx = np.asarray(idx, dtype=np.int64)
        self._check_idx(idx)
        if self._pooled is not None:
            order = np.argsort(idx, kind="stable")
            uniq, inverse = np.unique(idx[order], return_inverse=True)
            block = self._pooled[uniq]
            _check_finite(block, uniq, self.path, "pooled")
            out = np.empty((len(idx), block.shape[1]), dtype=np.float32)
            out[order] = block[inverse]
            return out
        return self.read_regions(idx).mean(axis=2)

    def read(self, idx: np.ndarray, kind: str) -> np.ndarray:
        return self.read_regions(idx) if kind == "regions" else self.read_pooled(idx)

    def iter_batches(self, idx: np.ndarray, batch_size: int, kind: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Sequential scan over ``idx`` in batches -> (row indices, features)."""
        idx = np.asarray(idx, dtype=np.int64)
        for s in range(0, len(idx), batch_size):
            b = idx[s:s + batch_size]
            yield b, self.read(b, kind)

    def _check_idx(self, idx: np.ndarray) -> None:
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_rows):
            raise DataError(f"{self.path}: row index out of range [0, {self.num_rows}): "
                            f"min {idx.min()}, max {idx.max()}")

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_finite(block: np.ndarray, rows: np.ndarray, path: Path, kind: str) -> None:
    """Raise naming the file and the dataset row when a batch just read holds NaN/Inf.

    Every read goes through here (one ``isfinite`` pass over a batch already in memory, cheap next
    to the read), so a corrupt row stops training at its first batch rather than as a NaN loss.
    """
    finite = np.isfinite(block)
    if not finite.all():
        bad = ~finite.reshape(len(block), -1).all(axis=1)
        row = int(rows[np.flatnonzero(bad)[0]])
        raise DataError(f"{path}: NaN/Inf in {kind} features of row {row} ({int(bad.sum())} bad row(s) in "
                        f"this batch of {len(block)}); the file is corrupt: re-extract or re-import it")


class MemoryStore:
    """Features held in memory, with :class:`FeatureStore`'s read API.

    Used for ``res101.mat`` (at most ~300 MB of pooled features), which cannot be read in batches,
    and for in-memory arrays (``Engine.from_arrays``: tests, notebooks).

    Args:
        features: ``[N, F]`` pooled or ``[N, F, R]`` region features (kept as float32); pooled
            features of regions are their mean over R, as in a store without ``pooled``.
        path: the file they came from (for messages).
        provenance: where they came from.
    """

    def __init__(self, features: np.ndarray, path: str | os.PathLike[str],
                 provenance: dict[str, Any] | None = None) -> None:
        if features.ndim not in (2, 3):
            raise DataError(f"{path}: features must be pooled (N, F) or regions (N, F, R), got {features.shape}")
        x = np.ascontiguousarray(features, dtype=np.float32)
        self._regions = x if x.ndim == 3 else None  # [N, F, R]
        self._pooled = x if x.ndim == 2 else None  # [N, F]
        self.path = Path(path)
        self.provenance: dict[str, Any] = dict(provenance or {})

    @property
    def has_regions(self) -> bool:
        return self._regions is not None

    @property
    def stores_pooled(self) -> bool:
        """Pooled features held apart (not computed from the regions on read)."""
        return self._pooled is not None

    @property
    def num_regions(self) -> int | None:
        return None if self._regions is None else int(self._regions.shape[2])

    @property
    def grid_side(self) -> int | None:
        r = self.num_regions
        side = None if r is None else int(round(r ** 0.5))
        return side if side is not None and side * side == r else None

    @property
    def _main(self) -> np.ndarray:
        x = self._regions if self._regions is not None else self._pooled
        assert x is not None  # the constructor sets one of the two
        return x

    @property
    def num_rows(self) -> int:
        return int(self._main.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self._main.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self._main.dtype

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "rows": self.num_rows, "feature_dim": self.feature_dim,
                "regions": self.num_regions, "regions_dtype": "float32" if self.has_regions else None,
                "pooled": self._pooled is not None, "provenance": self.provenance}

    def _check_idx(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_rows):
            raise DataError(f"{self.path}: row index out of range [0, {self.num_rows}): "
                            f"min {idx.min()}, max {idx.max()}")
        return idx

    def read_regions(self, idx: np.ndarray) -> np.ndarray:
        """Region features of rows ``idx`` -> float32 ``[B, F, R]`` (a copy)."""
        if self._regions is None:
            raise DataError(f"{self.path}: holds pooled features only; this method needs region features")
        idx = self._check_idx(idx)
        out = self._regions[idx]
        _check_finite(out, idx, self.path, "regions")
        return out

    def read_pooled(self, idx: np.ndarray) -> np.ndarray:
        """Pooled features of rows ``idx`` -> float32 ``[B, F]`` (a copy; mean over regions if not held)."""
        idx = self._check_idx(idx)
        if self._pooled is not None:
            out = self._pooled[idx]
            _check_finite(out, idx, self.path, "pooled")
            return out
        return self.read_regions(idx).mean(axis=2)

    def read(self, idx: np.ndarray, kind: str) -> np.ndarray:
        return self.read_regions(idx) if kind == "regions" else self.read_pooled(idx)

    def iter_batches(self, idx: np.ndarray, batch_size: int, kind: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Sequential scan over ``idx`` in batches -> (row indices, features)."""
        idx = np.asarray(idx, dtype=np.int64)
        for s in range(0, len(idx), batch_size):
            b = idx[s:s + batch_size]
            yield b, self.read(b, kind)

    def close(self) -> None:
        pass

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# What a dataset's ``features`` may be: an HDF5 store read in batches or pooled features in memory.
FeatureSource = FeatureStore | MemoryStore


class StoreWriter:
    """Chunked writer: ``with StoreWriter(path, n, f, r) as w: w.write(start, block)``.

    The file is written as ``<path>.tmp`` and renamed on a clean exit; on an exception it is
    removed unless ``keep_partial`` (resumable writers such as extraction keep it and track the
    rows done in the ``rows_done`` attribute).
    """

    def __init__(self, path: str | os.PathLike[str], num_rows: int, feature_dim: int,
                 num_regions: int | None, provenance: dict[str, Any], with_pooled: bool = False,
                 keep_partial: bool = False) -> None:
        import h5py

        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.keep_partial = keep_partial
        self.path.parent.mkdir(parents=True, exist_ok=True)
        resume = keep_partial and self.tmp.exists()
        self._h5 = h5py.File(self.tmp, "a" if resume else "w")
        if not resume:
            self._h5.attrs["format_version"] = FORMAT_VERSION
            self._h5.attrs["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
            self._h5.attrs["rows_done"] = 0
            if num_regions is not None:
                self._h5.create_dataset("regions", shape=(num_rows, feature_dim, num_regions),
                                        dtype="float16", chunks=(1, feature_dim, num_regions))
            if with_pooled or num_regions is None:
                self._h5.create_dataset("pooled", shape=(num_rows, feature_dim), dtype="float32",
                                        chunks=(min(num_rows, 256), feature_dim))
        self.num_rows = num_rows

    @property
    def rows_done(self) -> int:
        return int(self._h5.attrs["rows_done"])

    def write(self, start: int, regions: np.ndarray | None = None, pooled: np.ndarray | None = None) -> None:
        """Write rows ``start:start+len(block)``; ``regions`` [B, F, R] and/or ``pooled`` [B, F]."""
        n = len(regions) if regions is not None else len(pooled)  # type: ignore[arg-type]
        if regions is not None:
            if not np.isfinite(regions).all():
                raise DataError(f"{self.path}: NaN/Inf in region features of rows {start}..{start + n - 1}")
            self._h5["regions"][start:start + n] = regions.astype(np.float16, copy=False)
        if pooled is not None:
            if not np.isfinite(pooled).all():
                raise DataError(f"{self.path}: NaN/Inf in pooled features of rows {start}..{start + n - 1}")
            self._h5["pooled"][start:start + n] = pooled.astype(np.float32, copy=False)
        elif "pooled" in self._h5 and regions is not None:
            self._h5["pooled"][start:start + n] = regions.astype(np.float32).mean(axis=2)
        self._h5.attrs["rows_done"] = max(self.rows_done, start + n)
        self._h5.flush()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._h5.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        elif not self.keep_partial:
            self.tmp.unlink(missing_ok=True)
