"""Convert a published MSDN / TransZero feature-map HDF5 into the harness's feature store.

Source layout (``../shared/data/zsl/README.md``): ``feature_map`` (N, 2048, h, w) float32 (14×14 for
448-px input, 7×7 for 224), ``labels`` (N,) 0-based, ``trainval_loc`` / ``test_seen_loc`` /
``test_unseen_loc`` 0-based, optionally ``att``, ``original_att`` (C×A), ``w2v_att``. Rows follow
res101.mat's ``image_files``. The conversion streams ``chunk`` rows at a time (the sources are
19 to 60 GB) and writes ``regions`` (N, 2048, h·w) float16 + ``pooled`` (N, 2048) float32 through
:class:`~zsl_bench.data.store.StoreWriter` (temporary file renamed at the end).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .datasets import get_spec
from .store import STORE_NAME, StoreWriter

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("feature_map", "labels")
LOC_KEYS = ("trainval_loc", "test_seen_loc", "test_unseen_loc")


def import_msdn_hdf5(src: Path, dataset: str, root: Path, *, out: Path | None = None, chunk: int = 32,
                     progress: bool = True) -> Path:
    """Validate ``src`` and write it as ``<root>/<DIR>/features.h5`` (or ``out``).

    Args:
        src: the MSDN-layout HDF5 file.
        dataset: registry name; selects ``<root>/<DIR>/`` and the published facts checked against.
        root: data root; ``att_splits.mat`` and ``image_index.npz`` there are used for checks when present.
        out: store path to write instead of the default.
        chunk: rows per read/write (memory: chunk × 2048 × h·w × 4 bytes).

    Returns:
        The written store.
    """
    import h5py
    from tqdm import tqdm

    spec = get_spec(dataset)
    src = Path(src)
    if not src.is_file():
        raise DataError(f"{src}: no such file (expected an MSDN feature-map HDF5)")
    try:
        h5 = h5py.File(src, "r")
    except OSError as exc:
        raise DataError(f"{src}: not a readable HDF5 file ({exc})") from None
    with h5:
        fmap, labels, locs = _validate_layout(src, h5)
        n, f, h, w = fmap.shape
        _check_against_release(src, spec.dirname, Path(root), n, labels, locs)
        out = Path(out) if out else Path(root) / spec.dirname / STORE_NAME
        if out.is_dir():
            raise DataError(f"--out {out}: is a directory; give the path of the store file to write "
                            f"(e.g. {out / STORE_NAME})")
        if out.parent.exists() and not out.parent.is_dir():
            raise DataError(f"--out {out}: {out.parent} is not a directory")
        prov: dict[str, Any] = {
            "source": "real", "dataset": dataset, "imported_from": str(src.resolve()),
            "source_format": "MSDN/TransZero feature_map HDF5", "source_bytes": src.stat().st_size,
            "grid": [h, w], "image_size": h * 32,
            "weights": "ImageNet ResNet-101 as used by the source release (not re-extracted)",
            "image_list": "res101.mat image_files order (as the source)",
        }
        with StoreWriter(out, n, f, h * w, prov, with_pooled=True) as writer, \
                tqdm(total=n, unit="img", desc=f"import {spec.dirname}", disable=not progress) as bar:
            for s in range(0, n, chunk):
                block = np.asarray(fmap[s:s + chunk], dtype=np.float32).reshape(-1, f, h * w)  # [B, F, R]
                if not np.isfinite(block).all():
                    bad = s + int(np.flatnonzero(~np.isfinite(block).reshape(len(block), -1).all(axis=1))[0])
                    raise DataError(f"{src}: 'feature_map' holds NaN/Inf (first at row {bad}); "
                                    "the file is corrupt or truncated")
                writer.write(s, regions=block, pooled=block.mean(axis=2))
                bar.update(len(block))
    log.info("imported %s -> %s (%d rows, %d×%d regions)", src, out, n, h, w)
    return out


def _validate_layout(src: Path, h5: Any) -> tuple[Any, np.ndarray, dict[str, np.ndarray]]:
    missing = [k for k in REQUIRED_KEYS if k not in h5]
    if missing:
        raise DataError(f"{src}: missing dataset(s) {missing}; an MSDN feature-map HDF5 has "
                        f"'feature_map' (N, 2048, h, w) and 'labels' (N,); keys present: {sorted(h5.keys())}")
    fmap = h5["feature_map"]
    if fmap.ndim != 4 or fmap.shape[2] != fmap.shape[3] or fmap.shape[0] == 0:
        raise DataError(f"{src}: 'feature_map' must be (N, F, h, h) with N > 0, got {fmap.shape}")
    if fmap.dtype.kind != "f":
        raise DataError(f"{src}: 'feature_map' must be floating point, got {fmap.dtype}")
    n = fmap.shape[0]
    labels = np.asarray(h5["labels"][()]).ravel()
    if labels.shape != (n,):
        raise DataError(f"{src}: 'labels' has {labels.size} entries but 'feature_map' has {n} rows")
    if labels.dtype.kind not in "iu" and not np.array_equal(labels, np.round(labels)):
        raise DataError(f"{src}: 'labels' must be integers, got {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise DataError(f"{src}: 'labels' must be 0-based non-negative class indices (min {labels.min()})")
    locs: dict[str, np.ndarray] = {}
    for k in LOC_KEYS:
        if k in h5:
            loc = np.asarray(h5[k][()]).ravel().astype(np.int64)
            if loc.size and (loc.min() < 0 or loc.max() >= n):
                raise DataError(f"{src}: '{k}' indexes rows outside [0, {n}) (min {loc.min()}, max {loc.max()})")
            locs[k] = loc
    return fmap, labels, locs


def _check_against_release(src: Path, dirname: str, root: Path, n: int, labels: np.ndarray,
                           locs: dict[str, np.ndarray]) -> None:
    """Compare rows, split indices and labels with the dataset's att_splits.mat / image_index.npz."""
    mat = root / dirname / "att_splits.mat"
    if not mat.is_file():
        log.warning("%s not found: labels and split indices of %s are not checked", mat, src.name)
        return
    import scipy.io

    try:
        splits = scipy.io.loadmat(mat, variable_names=list(LOC_KEYS) + ["att"])
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError ... on bad bytes
        raise DataError(f"{mat}: not a readable MATLAB file ({type(exc).__name__}: {exc})") from None
    ref = {}
    for k in LOC_KEYS:
        if k in splits:
            loc = np.asarray(splits[k]).ravel()
            if loc.dtype.kind not in "iuf":
                raise DataError(f"{mat}: field '{k}' must hold integer indices, got dtype {loc.dtype}")
            ref[k] = loc.astype(np.int64) - 1
    expected_rows = sum(len(v) for v in ref.values())
    if len(ref) == len(LOC_KEYS) and n != expected_rows:
        raise DataError(f"{src}: {n} rows, but {mat} indexes {expected_rows} images; "
                        f"is this the {dirname} feature file?")
    for k, loc in locs.items():
        if k in ref and not np.array_equal(np.sort(loc), np.sort(ref[k])):
            raise DataError(f"{src}: '{k}' differs from {mat} ({k} - 1): rows are not in the release order")
    if "att" in splits and labels.max() >= splits["att"].shape[1]:
        raise DataError(f"{src}: label {labels.max()} but {mat} has {splits['att'].shape[1]} classes")
    index = root / dirname / "image_index.npz"
    if index.is_file():
        from .readers import read_image_index  # checks keys and dtype: one line, no traceback

        ref_labels = read_image_index(index).labels
        if ref_labels.shape != labels.shape or not np.array_equal(ref_labels, labels):
            diff = int((ref_labels != labels).sum()) if ref_labels.shape == labels.shape else "all"
            raise DataError(f"{src}: 'labels' differ from {index} ({diff} rows); rows are not in the release order")
    log.info("%s: rows, split indices and labels agree with %s", src.name, mat)


# ---------------------------------------------------------------- your own features (.npy / .npz)

ARRAY_SUFFIXES = (".npy", ".npz")
FP16_MAX = 65504.0


def import_array(src: Path, dataset: str, root: Path, *, key: str | None = None, out: Path | None = None,
                 chunk: int | None = None, progress: bool = True) -> Path:
    """Write your own features (CLIP embeddings, another backbone's regions, ...) into the store.

    ``src`` is a ``.npy`` array, or a ``.npz`` holding one (``key`` picks it when there are several):
    ``(N, F)`` pooled features or ``(N, F, R)`` region features, one row per image in the dataset's
    image order (``image_files`` of the proposed-split release, the order ``att_splits.mat`` indexes).
    The dataset's metadata (``<root>/<DIR>/att_splits.mat``, labels in ``image_index.npz`` or
    ``res101.mat``: ``zsl-bench data download``) must be there already: rows are checked against it.
    Regions are stored as float16 (pooled as float32), so values beyond ±65504 are refused. A
    ``.npy`` is read ``chunk`` rows at a time (default: ~64 MB per read); an ``.npz`` member is
    loaded whole (NumPy cannot map it), so prefer ``.npy`` for large region arrays.
    """
    from tqdm import tqdm

    spec = get_spec(dataset)
    src = Path(src)
    arr = _read_array(src, key)
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or 0 in arr.shape:
        raise DataError(f"{src}: features must be (N, F) pooled or (N, F, R) regions with N, F, R > 0, "
                        f"got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{src}: features must be numeric, got dtype {arr.dtype}")
    n = arr.shape[0]
    _check_rows_against_metadata(src, spec.name, spec.dirname, Path(root), n)
    out = Path(out) if out else Path(root) / spec.dirname / STORE_NAME
    regions = arr.shape[2] if arr.ndim == 3 else None
    chunk = chunk or max(1, (64 << 20) // (4 * int(np.prod(arr.shape[1:]))))
    prov: dict[str, Any] = {
        "source": "real", "dataset": dataset, "imported_from": str(src.resolve()) + (f"[{key}]" if key else ""),
        "source_format": "numpy array " + ("(N, F, R) regions" if regions else "(N, F) pooled"),
        "source_bytes": src.stat().st_size, "image_list": "the dataset's image order (as the source)",
    }
    with StoreWriter(out, n, arr.shape[1], regions, prov, with_pooled=True) as writer, \
            tqdm(total=n, unit="img", desc=f"import {spec.dirname}", disable=not progress) as bar:
        for s in range(0, n, chunk):
            block = np.asarray(arr[s:s + chunk], dtype=np.float32)
            finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
            if not finite.all():
                raise DataError(f"{src}: NaN/Inf in the features (first at row {s + int(np.flatnonzero(~finite)[0])})")
            if regions is not None:
                if np.abs(block).max() > FP16_MAX:
                    raise DataError(f"{src}: values beyond ±{FP16_MAX:g} (row block {s}..{s + len(block) - 1}) "
                                    "do not fit the store's float16 regions; rescale the features")
                writer.write(s, regions=block, pooled=block.mean(axis=2))
            else:
                writer.write(s, pooled=block)
            bar.update(len(block))
    log.info("imported %s -> %s (%d rows, %s)", src, out, n, "x".join(map(str, arr.shape[1:])))
    return out


def _read_array(src: Path, key: str | None) -> Any:
    if not src.is_file():
        raise DataError(f"{src}: no such file (expected a .npy or .npz array of features)")
    try:
        if src.suffix == ".npy":
            if key:
                raise DataError(f"{src}: --key applies to .npz files only")
            return np.load(src, mmap_mode="r", allow_pickle=False)  # read in chunks, never whole
        z = np.load(src, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{src}: not a readable {src.suffix} array ({str(exc).splitlines()[0]})") from None
    names = list(z.files)
    if key is None:
        if len(names) != 1:
            raise DataError(f"{src}: holds {len(names)} arrays {names}; pick the features with --key NAME")
        key = names[0]
    if key not in names:
        raise DataError(f"{src}: no array {key!r}; arrays present: {names}")
    return z[key]


def _check_rows_against_metadata(src: Path, name: str, dirname: str, root: Path, n: int) -> None:
    """The array must have one row per image of the release: the dataset's metadata says how many."""
    import scipy.io

    mat = root / dirname / "att_splits.mat"
    if not mat.is_file():
        raise DataError(f"{mat}: file not found; the features need the dataset's metadata first "
                        f"('zsl-bench data download {name}', or --data-root pointing at it)")
    index = root / dirname / "image_index.npz"
    if index.is_file():
        with np.load(index, allow_pickle=False) as z:
            expected, what = int(np.asarray(z["labels"]).size), f"{index} lists"
    else:
        try:
            splits = scipy.io.loadmat(mat, variable_names=list(LOC_KEYS))
        except (OSError, ValueError, NotImplementedError) as exc:
            raise DataError(f"{mat}: not a readable MATLAB file ({exc})") from None
        expected = max(int(np.asarray(splits[k]).max()) for k in LOC_KEYS if k in splits)
        what = f"{mat} indexes images up to"
        if n >= expected:
            return  # images past the last split index are allowed (res101.mat's image_files may be longer)
    if n != expected:
        raise DataError(f"{src}: {n} rows, but {what} {expected} images; rows must be one per image, in the "
                        "release's image order")
