"""Readers of the published ZSL file formats.

Each reader checks only what its one file can tell (format, keys, shapes, index base) and raises a
one-line :class:`~zsl_bench.errors.DataError` naming the file and field. Checks that need several
files (split coverage, class sets, published counts) live in :mod:`zsl_bench.data.loader`.

Formats (``../shared/data/zsl/README.md``):

- xlsa17 ``att_splits.mat``: ``att`` / ``original_att`` (A×C), ``allclasses_names`` (C×1, absent for
  FLO), ``trainval_loc``, ``test_seen_loc``, ``test_unseen_loc``, ``train_loc``, ``val_loc``
  (n×1, **1-based**). Converted here, once, to 0-based int64.
- ``res101.mat``: ``features`` (2048×N), ``labels`` (N×1, 1-based), ``image_files`` (N×1).
- ``image_index.npz``: ``labels`` (N,) 0-based, ``image_files`` (N,).
- MSDN / TransZero feature-map HDF5: ``feature_map`` (N, 2048, h, w) float32, ``labels`` (N,)
  0-based, ``*_loc`` 0-based, ``att`` / ``original_att`` (C×A), ``w2v_att`` (A×300).
- attribute word vectors: ``.npy`` or the legacy pickled array ``.pkl`` (read by a restricted
  unpickler that only rebuilds plain numpy arrays, so loading never runs code).
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .store import FeatureStore

LOC_KEYS = ("trainval_loc", "test_seen_loc", "test_unseen_loc", "train_loc", "val_loc")
MSDN_REGIONS_KEY = "feature_map"

PathLike = str | os.PathLike[str]


@dataclass
class AttSplits:
    """Contents of an ``att_splits.mat``; semantics as published (A×C), locs already 0-based."""

    path: Path
    att: np.ndarray  # [A, C] float64, as in the file
    original_att: np.ndarray | None  # [A, C]
    class_names: list[str] | None  # C names in file order, None when absent (FLO)
    locs: dict[str, np.ndarray]  # LOC_KEYS -> [n] int64, 0-based


@dataclass
class ImageIndex:
    path: Path
    labels: np.ndarray  # [N] int64, 0-based
    image_files: list[str] | None


@dataclass
class Res101:
    """Pooled ResNet-101 features of the xlsa17 release, transposed to rows."""

    path: Path
    features: np.ndarray  # [N, F] float32
    labels: np.ndarray  # [N] int64, 0-based
    image_files: list[str] | None


@dataclass
class MSDNFile:
    """An MSDN/TransZero feature-map HDF5: an open store handle plus its small metadata arrays."""

    path: Path
    store: FeatureStore  # regions_key="feature_map", (N, F, h, w)
    labels: np.ndarray | None  # [N] int64, 0-based
    locs: dict[str, np.ndarray] = field(default_factory=dict)  # 0-based int64
    att: np.ndarray | None = None  # [C, A]
    original_att: np.ndarray | None = None  # [C, A]
    w2v: np.ndarray | None = None  # [A, D]


# ------------------------------------------------------------------------------------ helpers
def _require_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found")


def _loadmat(path: Path) -> dict[str, Any]:
    """``scipy.io.loadmat`` with one-line errors for missing, truncated or non-MATLAB files."""
    import scipy.io

    _require_file(path)
    try:
        mat = scipy.io.loadmat(str(path))
    except NotImplementedError:
        # MATLAB v7.3 files are HDF5; the published releases are v5, so say what we expected.
        raise DataError(f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported; expected MATLAB v5") from None
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError ... on bad bytes
        raise DataError(f"{path}: not a readable MATLAB .mat file (truncated or wrong format: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return {k: v for k, v in mat.items() if not k.startswith("__")}


def _require_key(mapping: Any, key: str, path: Path) -> Any:
    if key not in mapping:
        present = sorted(k for k in mapping.keys() if not str(k).startswith("__"))
        raise DataError(f"{path}: missing key '{key}'; keys present: {present}")
    return mapping[key]


def _as_vector(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    """An n×1, 1×n or (n,) array -> (n,); anything else is a layout error."""
    arr = np.asarray(arr)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise DataError(f"{path}: field '{key}' must be a vector (n×1), got shape {arr.shape}")
    return arr


def _as_index(arr: np.ndarray, key: str, path: Path, one_based: bool) -> np.ndarray:
    """Integer index vector -> 0-based int64; rejects non-integers and a wrong base."""
    vec = _as_vector(arr, key, path)
    if vec.size and not np.issubdtype(vec.dtype, np.integer):
        if not np.issubdtype(vec.dtype, np.floating) or not np.all(np.isfinite(vec)) \
                or not np.all(vec == np.round(vec)):
            raise DataError(f"{path}: field '{key}' must hold integer indices, got dtype {vec.dtype}")
    vec = vec.astype(np.int64)
    if not one_based:
        if vec.size and vec.min() < 0:
            raise DataError(f"{path}: field '{key}' has a negative index ({vec.min()})")
        return vec
    if vec.size and vec.min() <= 0:
        raise DataError(f"{path}: field '{key}' contains index {vec.min()}; MATLAB indices are 1-based, "
                        f"so the file looks 0-based or corrupt (expected values 1..N)")
    return vec - 1


def _strings(arr: np.ndarray) -> list[str]:
    """MATLAB cell array of strings (C×1 object array of 1-element arrays) -> list of str."""
    out = []
    for item in np.asarray(arr, dtype=object).reshape(-1):
        while isinstance(item, np.ndarray):
            item = item.reshape(-1)[0] if item.size else ""
        out.append(str(item))
    return out


def _finite_float(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{path}: field '{key}' must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64 if arr.dtype == np.float64 else np.float32, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        raise DataError(f"{path}: field '{key}' has {int(bad.sum())} NaN/Inf value(s), first at {where}")
    return arr


# ------------------------------------------------------------------------------------ readers
def read_att_splits(path: PathLike) -> AttSplits:
    """Read an xlsa17 ``att_splits.mat``; all five ``*_loc`` become 0-based int64 here."""
    path = Path(path)
    mat = _loadmat(path)
    att = _finite_float(_require_key(mat, "att", path), "att", path)
    if att.ndim != 2:
        raise DataError(f"{path}: field 'att' must be a 2-D matrix (attributes × classes), got {att.shape}")
    original = None
    if "original_att" in mat:
        original = _finite_float(mat["original_att"], "original_att", path)
        if original.shape != att.shape:
            raise DataError(f"{path}: field 'original_att' has shape {original.shape}, "
                            f"but 'att' has {att.shape}; both must be attributes × classes")
    names = _strings(mat["allclasses_names"]) if "allclasses_names" in mat else None
    locs = {k: _as_index(_require_key(mat, k, path), k, path, one_based=True) for k in LOC_KEYS}
    return AttSplits(path, att, original, names, locs)


def read_image_index(path: PathLike) -> ImageIndex:
    """Read ``image_index.npz`` (``labels`` 0-based, ``image_files``); never unpickles."""
    path = Path(path)
    _require_file(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            labels = _as_index(_require_key(z, "labels", path), "labels", path, one_based=False)
            files = [str(f) for f in z["image_files"]] if "image_files" in z.files else None
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz of plain arrays ({type(exc).__name__}: {exc})") from None
    if files is not None and len(files) != len(labels):
        raise DataError(f"{path}: field 'image_files' has {len(files)} entries but 'labels' has {len(labels)}")
    return ImageIndex(path, labels, files)


def read_res101(path: PathLike) -> Res101:
    """Read xlsa17 ``res101.mat``: ``features`` (F×N), ``labels`` (N×1, 1-based), ``image_files``."""
    path = Path(path)
    mat = _loadmat(path)
    labels = _as_index(_require_key(mat, "labels", path), "labels", path, one_based=True)
    feats = np.asarray(_require_key(mat, "features", path))
    if feats.ndim != 2:
        raise DataError(f"{path}: field 'features' must be 2-D (feature_dim × N), got {feats.shape}")
    if feats.shape[1] != len(labels):
        hint = " (it looks transposed: expected feature_dim × N)" if feats.shape[0] == len(labels) else ""
        raise DataError(f"{path}: field 'features' has shape {feats.shape}, expected (feature_dim, "
                        f"{len(labels)}) to match 'labels'{hint}")
    if not np.issubdtype(feats.dtype, np.number):
        raise DataError(f"{path}: field 'features' must be numeric, got dtype {feats.dtype}")
    files = _strings(mat["image_files"]) if "image_files" in mat else None
    if files is not None and len(files) != len(labels):
        raise DataError(f"{path}: field 'image_files' has {len(files)} entries but 'labels' has {len(labels)}")
    # [F, N] -> [N, F]; NaN/Inf is checked per batch by `data verify`, not here.
    return Res101(path, np.ascontiguousarray(feats.T, dtype=np.float32), labels, files)


def open_msdn_hdf5(path: PathLike) -> MSDNFile:
    """Open an MSDN/TransZero feature-map HDF5 as a store handle plus its metadata arrays."""
    import h5py

    path = Path(path)
    _require_file(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None
    with h5:
        if MSDN_REGIONS_KEY not in h5 or not isinstance(h5[MSDN_REGIONS_KEY], h5py.Dataset):
            raise DataError(f"{path}: missing dataset '{MSDN_REGIONS_KEY}' (N, 2048, h, w); keys present: "
                            f"{sorted(h5)}")
        fmap = h5[MSDN_REGIONS_KEY]
        if fmap.ndim != 4:
            raise DataError(f"{path}: dataset '{MSDN_REGIONS_KEY}' must be (N, feature_dim, h, w), got {fmap.shape}")
        n = int(fmap.shape[0])
        labels = None
        if "labels" in h5:
            labels = _as_index(h5["labels"][()], "labels", path, one_based=False)
            if len(labels) != n:
                raise DataError(f"{path}: dataset 'labels' has {len(labels)} entries but "
                                f"'{MSDN_REGIONS_KEY}' has {n} rows")
        locs = {k: _as_index(h5[k][()], k, path, one_based=False) for k in LOC_KEYS if k in h5}
        att = _finite_float(h5["att"][()], "att", path) if "att" in h5 else None
        orig = _finite_float(h5["original_att"][()], "original_att", path) if "original_att" in h5 else None
        w2v = _finite_float(h5["w2v_att"][()], "w2v_att", path) if "w2v_att" in h5 else None
    store = FeatureStore(path, regions_key=MSDN_REGIONS_KEY, pooled_key="pooled")
    return MSDNFile(path, store, labels, locs, att, orig, w2v)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Rebuilds plain numpy arrays and nothing else: any other global is refused before use."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        if module == "numpy":
            return getattr(np, name)
        # Pickles written by numpy 1.x name numpy.core; numpy 2.x moved it to numpy._core.
        import importlib

        try:
            multiarray = importlib.import_module("numpy._core.multiarray")
        except ImportError:  # numpy 1.x
            multiarray = importlib.import_module("numpy.core.multiarray")
        return getattr(multiarray, name)


def read_word_vectors(path: PathLike) -> np.ndarray:
    """Attribute word vectors ``[A, D]`` from ``.npy`` or a legacy ``.pkl`` of one numpy array."""
    path = Path(path)
    _require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"{path}: not a readable .npy of a numeric array ({type(exc).__name__}: {exc})") from None
    elif suffix == ".pkl":
        try:
            arr = _ArrayOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
        except pickle.UnpicklingError as exc:
            raise DataError(f"{path}: pickle refused: only a plain numpy array is accepted ({exc})") from None
        except Exception as exc:
            raise DataError(f"{path}: not a readable pickle of a numpy array ({type(exc).__name__}: {exc})") from None
    else:
        raise DataError(f"{path}: unknown word-vector format '{suffix}'; expected .npy or .pkl")
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{path}: expected a numeric numpy array, got {type(arr).__name__}"
                        f"{' of dtype ' + str(arr.dtype) if isinstance(arr, np.ndarray) else ''}")
    if arr.ndim != 2:
        raise DataError(f"{path}: word vectors must be 2-D (attributes × dim), got shape {arr.shape}")
    return _finite_float(arr, "word vectors", path).astype(np.float32)
