"""``load_dataset``: read one dataset (real or simulated) into a checked :class:`ZSLData`.

Files of ``<root>/<DIR>/`` (``docs/ARCHITECTURE.md``, "Data layout"):

- ``att_splits.mat`` (required): class semantics and the five 1-based index lists;
- per-image labels from ``image_index.npz`` > ``res101.mat`` > ``feature_map_ResNet_101_<DIR>.hdf5``;
- feature sets (:mod:`zsl_bench.data.features`): ``features.h5`` (our store), ``features-<N>px.h5``
  (``data extract --size N``), the MSDN feature-map HDF5, ``res101.mat`` (pooled, read into memory on
  first use); which one a method is fed is :meth:`ZSLData.choose_features`' choice (res101.mat for
  pooled methods, the paper's image size for region methods); ``features`` is the first of store >
  MSDN > res101.mat (``data info``, ``data verify``); none is fine for ``data info``;
- word vectors ``w2v/<DIR>_attribute.npy`` (or the legacy ``.pkl``), attribute names when present.

Every load-time check raises a one-line :class:`DataError` naming the file and field. NaN/Inf in
features is not scanned here (that reads every row); ``zsl-bench data verify`` does it per batch.

Honest validation split (PROTOCOL.md): ``train = train_loc ∖ test_seen``, ``val = val_loc ∖
test_seen``; ``val_seen`` takes, per class of ``train``, ``k = floor(0.2·n + 0.5)`` images (clipped to
``[1, n−1]``) drawn by ``numpy.random.default_rng(VAL_SEED)`` visiting classes in increasing order;
``val_train`` is the rest; ``val_unseen = val``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from . import root as roots
from .datasets import DatasetSpec, get_spec
from .features import STORE_SIZED, FeatureSet, check_rows, store_set
from .readers import (
    AttSplits,
    Res101,
    open_msdn_hdf5,
    read_att_splits,
    read_image_index,
    read_res101,
    read_word_vectors,
)
from .store import STORE_NAME, FeatureSource, FeatureStore, MemoryStore
from .zsldata import FINAL_SPLITS, UNKNOWN_LABEL, ZSLData

log = logging.getLogger(__name__)

VAL_SEED = 0  # fixed: the honest validation split must be the same for every run and method
VAL_SEEN_FRACTION = 0.2
SIM_META = "sim.json"
ATT_SPLITS = "att_splits.mat"
IMAGE_INDEX = "image_index.npz"
RES101 = "res101.mat"


# ------------------------------------------------------------------------------------ entry points
def load_dataset(name: str, data_root: str | os.PathLike[str] | None = None, *, sim_preset: str | None = None,
                 sim_seed: int = 0, sim_overrides: dict[str, Any] | None = None) -> ZSLData:
    """Load dataset ``name`` (a registered name: cub, sun, ...), checked, with 0-based splits.

    Args:
        name: registry name; unknown names raise with close suggestions.
        data_root: real data root (``--data-root``); else ``$ZSL_BENCH_DATA``, else the cache.
            With ``sim_preset`` it is passed to the generator (which may read real metadata).
        sim_preset: load the simulated benchmark of this preset (generated first if missing).
        sim_seed: the generator's seed.
        sim_overrides: generator parameters (``sim.SimParams`` fields of the chosen version) and
            optionally ``generator`` (a ``sim.GENERATORS`` name; default ``sim.DEFAULT_GENERATOR``). The
            dataset lives in ``sim.cache_root(preset, seed, generator, **overrides)``, so every
            setting has its own directory. Only with ``sim_preset``.
    """
    spec = get_spec(name)
    if sim_overrides and sim_preset is None:
        raise ConfigError(f"sim parameters {sorted(sim_overrides)} given for real data; they apply only to "
                          "the simulated benchmark (--sim)")
    try:
        return _load_dataset(spec, data_root, sim_preset, sim_seed, dict(sim_overrides or {}))
    except OSError as exc:  # unreadable directory or file (permissions, a name too long, I/O error)
        raise _os_error(exc) from None


def _os_error(exc: OSError) -> DataError:
    what = exc.filename if exc.filename is not None else "dataset directory"
    return DataError(f"{what}: cannot access ({exc.strerror or type(exc).__name__}); check the path and its "
                     f"permissions")


def _load_dataset(spec: DatasetSpec, data_root: str | os.PathLike[str] | None, sim_preset: str | None,
                  sim_seed: int, sim_overrides: dict[str, Any]) -> ZSLData:
    if sim_preset is None:
        root = roots.data_root(data_root)
        ddir = root / spec.dirname
        if not _is_file(ddir / ATT_SPLITS):
            raise DataError(
                f"{ddir / ATT_SPLITS}: file not found; point --data-root or $ZSL_BENCH_DATA at a directory "
                f"holding {spec.dirname}/{ATT_SPLITS}, get the dataset with 'zsl-bench data download {spec.name}' "
                f"(features: then 'zsl-bench data extract {spec.name}' or 'zsl-bench data import {spec.name} "
                "FILE'), or use the simulated benchmark (--sim)")
        return load_from_dir(spec.name, ddir, source="real", root=root)
    from . import sim  # lazy: the generator pulls in more than loading needs

    presets = getattr(sim, "PRESETS", ())
    generator = sim_overrides.pop("generator", None)
    extra: dict[str, Any] = {}
    if generator is not None or sim_overrides:
        if sim_preset not in presets:
            raise ConfigError(f"sim preset '{sim_preset}': generator parameters apply only to the generator's "
                              f"presets ({', '.join(presets)})")
        # Every version / override setting has its own directory (the same one generate() picks).
        root = sim.cache_root(sim_preset, sim_seed, generator, **sim_overrides)
        extra = {"generator": generator, **sim_overrides}
    else:
        root = roots.sim_root(sim_preset, sim_seed)  # = sim.cache_root(preset, seed) for the default version
    ddir = root / spec.dirname
    # The generator's own presets always go through it: it returns a matching cached copy at once,
    # regenerates a stale one (other generator version) and serialises concurrent processes.
    if sim_preset in presets or not ((ddir / SIM_META).is_file() and (ddir / ATT_SPLITS).is_file()):
        log.info("simulated %s (preset %s, seed %d): generating unless cached", spec.dirname, sim_preset, sim_seed)
        out = sim.generate(spec.name, sim_preset, seed=sim_seed, data_root=data_root, **extra)
        if out is not None and Path(out).is_dir():
            ddir = Path(out)
    meta = read_sim_meta(ddir / SIM_META)
    return load_from_dir(spec.name, ddir, source="simulated", root=ddir.parent, provenance=meta)


def _is_file(path: Path) -> bool:
    """Whether an optional dataset file is there; a directory (or other non-file) in its place is an
    error, not a silent "absent" (which would load a dataset without its labels or features)."""
    if path.is_file():
        return True
    if path.exists():
        raise DataError(f"{path}: exists but is not a regular file; expected the {path.name} file (or nothing)")
    return False


def read_sim_meta(path: Path) -> dict[str, Any]:
    """The generator's provenance (``sim.json``): version, seed, preset, parameters."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; the simulated dataset is incomplete (regenerate it)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object with the generator's provenance")
    return meta


def load_from_dir(name: str, ddir: str | os.PathLike[str], *, source: str = "real",
                  root: str | os.PathLike[str] | None = None,
                  provenance: dict[str, Any] | None = None) -> ZSLData:
    """Load and check one dataset directory laid out as ``<root>/<DIR>/``.

    Args:
        name: registry name (its spec gives the directory name and, for real data, the counts).
        ddir: the dataset directory.
        source: ``real`` (published counts are checked) or ``simulated``.
        root: the data root it lives in (for messages and provenance).
        provenance: extra provenance (the generator's ``sim.json`` for simulated data).
    """
    spec = get_spec(name)
    try:
        return _load_from_dir(spec, Path(ddir), source, root, provenance)
    except OSError as exc:
        raise _os_error(exc) from None


def _load_from_dir(spec: DatasetSpec, ddir: Path, source: str, root: str | os.PathLike[str] | None,
                   provenance: dict[str, Any] | None) -> ZSLData:
    files: dict[str, str] = {}
    splits_file = ddir / ATT_SPLITS
    att_splits = read_att_splits(splits_file)
    files["att_splits"] = str(splits_file)

    # --- labels: image_index.npz > res101.mat > MSDN HDF5; features: features.h5 > MSDN > res101.mat
    res101: Res101 | None = None
    msdn_path = ddir / spec.msdn_file
    msdn = open_msdn_hdf5(msdn_path) if _is_file(msdn_path) else None
    labels: np.ndarray | None = None
    image_files: list[str] | None = None
    labels_from = None
    if _is_file(ddir / IMAGE_INDEX):
        index = read_image_index(ddir / IMAGE_INDEX)
        labels, image_files, labels_from = index.labels, index.image_files, index.path
    elif _is_file(ddir / RES101):
        res101 = read_res101(ddir / RES101)
        labels, image_files, labels_from = res101.labels, res101.image_files, res101.path
    elif msdn is not None and msdn.labels is not None:
        labels, labels_from = msdn.labels, msdn.path
    if labels_from is not None:
        files["labels"] = str(labels_from)

    # Every feature file is a feature set (data/features.py); ``features`` is the first of
    # store > MSDN > res101.mat, as shown by ``data info`` and scanned by ``data verify``.
    sets: list[FeatureSet] = []
    sim_preset = (provenance or {}).get("preset") if source == "simulated" else None
    if _is_file(ddir / STORE_NAME):
        sets.append(store_set("store", FeatureStore(ddir / STORE_NAME), sim_preset=sim_preset))
    for path in sorted(ddir.glob("features-*px.h5"), key=lambda p: (len(p.name), p.name)):
        m = STORE_SIZED.match(path.name)
        if m and _is_file(path):
            sets.append(store_set(f"store-{m.group(1)}px", FeatureStore(path), sim_preset=sim_preset))
    if msdn is not None:
        sets.append(store_set("msdn", msdn.store))
    if _is_file(ddir / RES101):
        sets.append(_xlsa17_set(ddir / RES101, res101, source))
    features: FeatureSource | None = sets[0].open() if sets else None
    if features is not None:
        files["features"] = str(features.path)

    try:
        data = _assemble(spec, ddir, att_splits, labels, labels_from, image_files, features, res101, msdn,
                         source=source, files=files)
        n_from = f"{data.num_images} images"
        for fs in sets:
            if fs._source is not None:
                check_rows(fs._source, data.num_images, fs.path, n_from)
            elif fs.origin == "xlsa17":
                fs.opener = functools.partial(_res101_store, fs.path, None, source,
                                              data.labels if data.has_labels else None, n_from)
        data.feature_sets = sets
        data.provenance["feature_sets"] = {fs.name: str(fs.path) for fs in sets}
    except BaseException:
        for fs in sets:
            fs.close()
        raise
    data.provenance.update({"source": source, "root": str(root if root is not None else ddir.parent),
                            "dir": str(ddir), "files": files})
    if provenance:
        data.provenance.update({k: v for k, v in provenance.items() if k not in ("root", "dir", "files")})
        data.provenance["source"] = source
    if source == "simulated" and "semantics" not in data.provenance:
        from . import sim  # lazy, as for generating

        # generated or real-<digest of the real files read>: result rows record it (column sim_semantics)
        data.provenance["semantics"] = sim.dataset_semantics(ddir, data.provenance)
    return data


def _xlsa17_set(path: Path, res101: Res101 | None, source: str) -> FeatureSet:
    """``res101.mat`` as a pooled feature set, read on first use (now, when already read for labels)."""
    fs = FeatureSet(name="xlsa17", path=path, kinds=("pooled",), image_size=224, regions=None, origin="xlsa17",
                    opener=functools.partial(_res101_store, path, res101, source))
    if res101 is not None:
        fs.open()
    return fs


def _res101_store(path: Path, res101: Res101 | None, source: str, labels: np.ndarray | None = None,
                  n_from: str = "") -> MemoryStore:
    """res101.mat's features in memory; read after loading, its rows and labels must match ``labels``."""
    r = res101 or read_res101(path)
    if labels is not None and len(r.labels) != len(labels):
        raise DataError(f"{path}: holds {len(r.labels)} rows, expected {n_from}")
    if labels is not None and not np.array_equal(r.labels, labels):
        raise DataError(f"{path}: field 'labels' disagrees with the dataset's labels; rows must follow the same "
                        "image order")
    return MemoryStore(r.features, r.path, {"source": source, "file": RES101})


# ------------------------------------------------------------------------------------ checks
def _assemble(spec: DatasetSpec, ddir: Path, att_splits: AttSplits, labels: np.ndarray | None,
              labels_from: Path | None, image_files: list[str] | None, features: FeatureSource | None,
              res101: Res101 | None, msdn: Any, *, source: str, files: dict[str, str]) -> ZSLData:
    path = att_splits.path
    locs = att_splits.locs
    real = source == "real"

    # Number of images: from the labels, else the final splits (which must cover every image).
    if labels is not None:
        n = len(labels)
        n_from = f"{len(labels)} images in {labels_from.name if labels_from else '?'}"
    else:
        n = int(sum(len(locs[f"{s}_loc"]) for s in FINAL_SPLITS))
        n_from = f"{n} images = sizes of the three final splits"
    for key, idx in locs.items():
        _check_range(idx, n, path, key, n_from)
        _check_unique(idx, path, key)
    _check_final_partition(locs, n, path)

    # Class count K and the att layout (published A×C).
    att = att_splits.att
    if real:
        k = spec.seen + spec.unseen
        k_from = f"{spec.dirname} has {k} classes (published)"
    elif att_splits.class_names is not None:
        k = len(att_splits.class_names)
        k_from = f"'allclasses_names' lists {k} classes"
    elif labels is not None:
        k = int(labels.max()) + 1 if len(labels) else 0
        k_from = f"labels reach class {k - 1}"
    else:
        k = att.shape[1]
        k_from = "the file"
    if att.shape[1] != k:
        if att.shape[0] == k:
            raise DataError(f"{path}: field 'att' has shape {att.shape}, which looks transposed (classes × "
                            f"attributes); expected attributes × classes with {k} classes ({k_from})")
        raise DataError(f"{path}: field 'att' has shape {att.shape}, expected attributes × {k} classes ({k_from})")
    names = att_splits.class_names
    if names is not None and len(names) != k:
        raise DataError(f"{path}: field 'allclasses_names' has {len(names)} entries, expected {k} ({k_from})")
    zero = np.flatnonzero(~(att != 0).any(axis=0))
    if zero.size:
        # An all-zero class vector scores 0 against every image (and normalises to NaN): refuse it.
        raise DataError(f"{path}: field 'att' is all zero for {_class_label(int(zero[0]), names)} "
                        f"({zero.size} class(es) in all); every class needs a non-zero attribute vector")
    if labels is not None and len(labels) and int(labels.max()) >= k:
        raise DataError(f"{labels_from}: field 'labels' has class {int(labels.max())}, out of range "
                        f"0..{k - 1} ({k_from})")
    if labels is not None and image_files is not None and names is not None:
        _check_image_classes(labels, image_files, names, labels_from)

    splits = {s: np.sort(locs[f"{s}_loc"]) for s in FINAL_SPLITS}
    if labels is not None:
        seen, unseen = _check_classes(labels, splits, k, names, path, labels_from)
    else:
        seen = unseen = np.empty(0, dtype=np.int64)
        labels = np.full(n, UNKNOWN_LABEL, dtype=np.int64)
        log.debug("%s: no per-image labels (%s, %s or %s absent); class sets unknown",
                 ddir, IMAGE_INDEX, RES101, spec.msdn_file)
    has_labels = bool((labels != UNKNOWN_LABEL).all())

    if real:
        _check_published(spec, n, splits, seen, unseen, att, has_labels, path)

    val_splits, val_seen_c, val_unseen_c = honest_validation(labels if has_labels else None, locs, path)
    splits.update(val_splits)

    # Features must have one row per image, in the same order as the labels.
    if features is not None and features.num_rows != n:
        raise DataError(f"{features.path}: holds {features.num_rows} rows, expected {n} ({n_from})")
    if res101 is not None and labels_from is not None and res101.path != labels_from \
            and not np.array_equal(res101.labels, labels):
        raise DataError(f"{res101.path}: field 'labels' disagrees with {labels_from.name}; rows must follow "
                        f"the same image order")
    if msdn is not None:
        _check_msdn(msdn, labels if has_labels else None, locs, labels_from)

    w2v, w2v_file = _read_w2v(ddir, spec.dirname, att.shape[0])
    if w2v_file is not None:
        files["w2v"] = str(w2v_file)
    original = att_splits.original_att
    return ZSLData(
        name=spec.name,
        att=np.ascontiguousarray(att.T, dtype=np.float32),  # [K, A]
        labels=labels,
        seen_classes=seen,
        unseen_classes=unseen,
        splits=splits,
        val_seen_classes=val_seen_c,
        val_unseen_classes=val_unseen_c,
        source=source,
        original_att=None if original is None else np.ascontiguousarray(original.T, dtype=np.float32),
        w2v=w2v,
        class_names=names,
        attribute_names=_read_attribute_names(ddir, spec, att.shape[0]),
        image_files=image_files,
        features=features,
        ground_truth=(ddir / "ground_truth.npz") if (ddir / "ground_truth.npz").is_file() else None,
        provenance={"labels_from": str(labels_from) if labels_from else None,
                    "features_from": str(features.path) if features is not None else None},
    )


def _check_range(idx: np.ndarray, n: int, path: Path, key: str, n_from: str) -> None:
    if idx.size and int(idx.max()) >= n:
        raise DataError(f"{path}: field '{key}' has index {int(idx.max()) + 1}, out of range 1..{n} ({n_from})")


def _check_unique(idx: np.ndarray, path: Path, key: str) -> None:
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        raise DataError(f"{path}: field '{key}' lists image {dup + 1} more than once")


def _check_final_partition(locs: dict[str, np.ndarray], n: int, path: Path) -> None:
    keys = [f"{s}_loc" for s in FINAL_SPLITS]
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            both = np.intersect1d(locs[a], locs[b])
            if both.size:
                raise DataError(f"{path}: fields '{a}' and '{b}' share {both.size} image(s) "
                                f"(first: {int(both[0]) + 1}); the final splits must be disjoint")
    covered = sum(len(locs[k]) for k in keys)
    if covered != n:
        missing = np.setdiff1d(np.arange(n), np.concatenate([locs[k] for k in keys]))
        first = f" (first missing: {int(missing[0]) + 1})" if missing.size else ""
        raise DataError(f"{path}: fields {', '.join(keys)} cover {covered} of {n} images{first}; "
                        f"the final splits must cover every image")


def _class_label(c: int, names: list[str] | None) -> str:
    return f"class {c} ({names[c]!r})" if names is not None else f"class {c}"


def _image_class(path: str, index: dict[str, int]) -> int | None:
    """The class a published image path names (``.../001.Black_footed_Albatross/x.jpg``, SUN's
    ``images/a/apse/indoor/x.jpg`` for ``apse_indoor``), or None when no directory names a class."""
    parts = path.replace("\\", "/").split("/")[:-1]
    for depth in (3, 2, 1):  # longest first: SUN has both bakery_kitchen and kitchen
        if len(parts) >= depth:
            c = index.get("_".join(parts[-depth:]))
            if c is not None:
                return c
    return None


def _check_image_classes(labels: np.ndarray, image_files: list[str], names: list[str],
                         labels_from: Path | None) -> None:
    """Each image whose path names a class (the real releases' class directories) must carry its label.

    This is what tells a relabelled image (the labels file is at fault) from a split moved in
    att_splits.mat, which the split checks alone cannot tell apart.
    """
    index = {n: c for c, n in enumerate(names)}
    wrong = []
    for i, (f, lab) in enumerate(zip(image_files, labels.tolist())):
        c = _image_class(f, index)
        if c is not None and c != lab:
            wrong.append((i, f, lab, c))
    if wrong:
        i, f, lab, c = wrong[0]
        raise DataError(f"{labels_from}: field 'labels' gives image {i} ({f!r}) class {lab} ({names[lab]!r}), "
                        f"but its path names class {c} ({names[c]!r}) ({len(wrong)} image(s) disagree); "
                        f"the labels are corrupt or out of order")


def _suspect(labels: np.ndarray, rows: np.ndarray, c: int, key: str, labels_from: Path | None) -> str:
    """Name the image(s) behind a class/split conflict and the labels file, which may be the one at fault."""
    odd = rows[labels[rows] == c]
    if labels_from is None or not odd.size:
        return ""
    return (f"; or {labels_from.name} mislabels image {int(odd[0])} (of '{key}', {odd.size} such image(s)): "
            f"check {labels_from}")


def _check_classes(labels: np.ndarray, splits: dict[str, np.ndarray], k: int, names: list[str] | None,
                   path: Path, labels_from: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """seen = classes(trainval) = classes(test_seen); unseen = classes(test_unseen); disjoint; all K.

    A conflict here may come from either file (a split moved in ``att_splits.mat`` or an image
    relabelled in the labels file); the message names the split file, the image and the labels file.
    """
    seen = np.unique(labels[splits["trainval"]])
    seen_test = np.unique(labels[splits["test_seen"]])
    unseen = np.unique(labels[splits["test_unseen"]])
    no_test = np.setdiff1d(seen, seen_test)
    if no_test.size:
        raise DataError(f"{path}: {_class_label(int(no_test[0]), names)} has trainval images but no test_seen "
                        f"image (field 'test_seen_loc'); every class needs test images")
    extra = np.setdiff1d(seen_test, seen)
    if extra.size:
        c = int(extra[0])
        raise DataError(f"{path}: {_class_label(c, names)} is in 'test_seen_loc' but has no "
                        f"trainval image (field 'trainval_loc')"
                        + _suspect(labels, splits["test_seen"], c, "test_seen_loc", labels_from))
    both = np.intersect1d(seen, unseen)
    if both.size:
        c = int(both[0])
        # The side with fewer images of the class is the odd one out.
        tv, tu = splits["trainval"], splits["test_unseen"]
        rows, key = (tu, "test_unseen_loc") if (labels[tu] == c).sum() <= (labels[tv] == c).sum() \
            else (tv, "trainval_loc")
        raise DataError(f"{path}: {_class_label(c, names)} is both seen (trainval) and unseen "
                        f"(test_unseen); fields 'trainval_loc' and 'test_unseen_loc' must hold disjoint classes"
                        + _suspect(labels, rows, c, key, labels_from))
    absent = np.setdiff1d(np.arange(k), np.union1d(seen, unseen))
    if absent.size:
        raise DataError(f"{path}: {_class_label(int(absent[0]), names)} has no test image ({absent.size} "
                        f"class(es) in neither 'test_seen_loc' nor 'test_unseen_loc')")
    return seen.astype(np.int64), unseen.astype(np.int64)


def _check_published(spec: DatasetSpec, n: int, splits: dict[str, np.ndarray], seen: np.ndarray,
                     unseen: np.ndarray, att: np.ndarray, has_labels: bool, path: Path) -> None:
    got = {"images": n, "trainval": len(splits["trainval"]), "test_seen": len(splits["test_seen"]),
           "test_unseen": len(splits["test_unseen"]), "semantic_dim": att.shape[0]}
    want = {"images": spec.images, "trainval": spec.trainval, "test_seen": spec.test_seen,
            "test_unseen": spec.test_unseen, "semantic_dim": spec.semantic_dim}
    if has_labels:
        got.update(seen=len(seen), unseen=len(unseen))
        want.update(seen=spec.seen, unseen=spec.unseen)
    bad = [f"{key} {got[key]} (published {want[key]})" for key in want if got[key] != want[key]]
    if bad:
        raise DataError(f"{path}: counts differ from the published {spec.dirname}: {', '.join(bad)}")


def honest_validation(labels: np.ndarray | None, locs: dict[str, np.ndarray],
                      path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The leak-free validation splits (module docstring) and the classes playing seen / unseen.

    Args:
        labels: ``[N]`` 0-based labels, or None when unknown (then val_train / val_seen are empty).
        locs: 0-based ``*_loc`` of ``att_splits.mat``.
        path: the ``att_splits.mat`` (for messages).
    """
    test_seen = locs["test_seen_loc"]
    train = np.setdiff1d(locs["train_loc"], test_seen)
    val = np.setdiff1d(locs["val_loc"], test_seen)
    for key, split in (("train_loc", train), ("val_loc", val)):
        leak = np.intersect1d(split, locs["test_unseen_loc"])
        if leak.size:
            raise DataError(f"{path}: field '{key}' contains {leak.size} test_unseen image(s) (first: "
                            f"{int(leak[0]) + 1}); validation must not touch the unseen test set")
    empty = np.empty(0, dtype=np.int64)
    if labels is None:
        out = {"train": train, "val": val, "val_train": empty, "val_seen": empty, "val_unseen": val}
        return out, empty, empty
    train_c = np.unique(labels[train])
    val_c = np.unique(labels[val])
    both = np.intersect1d(train_c, val_c)
    if both.size:
        raise DataError(f"{path}: class {int(both[0])} is in both 'train_loc' and 'val_loc' (after removing "
                        f"test_seen); validation classes must be disjoint from train classes")
    rng = np.random.default_rng(VAL_SEED)
    fit_parts, seen_parts = [], []
    train_labels = labels[train]
    for c in train_c:
        members = train[train_labels == c]  # sorted, since train is sorted
        size = len(members)
        if size < 2:
            raise DataError(f"{path}: class {int(c)} has {size} image in 'train_loc' after removing test_seen; "
                            f"the honest validation split needs at least 2 per class")
        k = min(max(int(np.floor(VAL_SEEN_FRACTION * size + 0.5)), 1), size - 1)
        perm = rng.permutation(size)
        seen_parts.append(members[perm[:k]])
        fit_parts.append(members[perm[k:]])
    val_train = np.sort(np.concatenate(fit_parts)) if fit_parts else empty
    val_seen = np.sort(np.concatenate(seen_parts)) if seen_parts else empty
    out = {"train": train, "val": val, "val_train": val_train, "val_seen": val_seen, "val_unseen": val}
    return out, train_c.astype(np.int64), val_c.astype(np.int64)


def _check_msdn(msdn: Any, labels: np.ndarray | None, locs: dict[str, np.ndarray],
                labels_from: Path | None) -> None:
    """The MSDN file's own labels and 0-based locs must agree with the files chosen as reference."""
    if labels is not None and msdn.labels is not None and labels_from != msdn.path \
            and not np.array_equal(msdn.labels, labels):
        raise DataError(f"{msdn.path}: dataset 'labels' disagrees with {labels_from}; rows must follow "
                        f"res101.mat's image order")
    for key, idx in msdn.locs.items():
        if key in FINAL_SPLITS_LOCS and not np.array_equal(np.sort(idx), np.sort(locs[key])):
            raise DataError(f"{msdn.path}: dataset '{key}' disagrees with att_splits.mat '{key}' "
                            f"(MSDN files store 0-based indices)")


FINAL_SPLITS_LOCS = tuple(f"{s}_loc" for s in FINAL_SPLITS)


def _read_w2v(ddir: Path, dirname: str, num_attributes: int) -> tuple[np.ndarray | None, Path | None]:
    for suffix in (".npy", ".pkl"):
        path = ddir / "w2v" / f"{dirname}_attribute{suffix}"
        if _is_file(path):
            w2v = read_word_vectors(path)
            if w2v.shape[0] != num_attributes:
                hint = " (it looks transposed)" if w2v.shape[1] == num_attributes else ""
                raise DataError(f"{path}: word vectors have shape {w2v.shape}, expected ({num_attributes}, D): "
                                f"one row per attribute of att_splits.mat{hint}")
            return w2v, path
    return None, None


def _read_attribute_names(ddir: Path, spec: DatasetSpec, num_attributes: int) -> list[str] | None:
    """Attribute names when the release has them (``spec.attribute_names``: ``.txt`` or ``.mat``)."""
    names: list[str] | None = None
    path = ddir / (spec.attribute_names or "")
    if spec.attribute_names is None or not path.is_file():
        return None
    if path.suffix == ".mat":
        from .readers import _loadmat, _strings

        mat = _loadmat(path)
        if "attributes" in mat:
            names = _strings(mat["attributes"])
    else:  # "<id> <name>" per line (CUB attributes.txt, AWA2 predicates.txt)
        lines = [ln.split(maxsplit=1) for ln in path.read_text().splitlines() if ln.strip()]
        names = [parts[-1] for parts in lines]
    if names is not None and len(names) != num_attributes:
        log.warning("%s: %d attribute names for %d attributes; ignoring the names", ddir, len(names), num_attributes)
        return None
    return names


# ------------------------------------------------------------------------------------ verify helpers
def sha256_file(path: str | os.PathLike[str], block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(root: str | os.PathLike[str]) -> dict[Path, str]:
    """sha256 per file from ``<root>/MANIFEST.tsv`` (columns ``file``, ``bytes``, ``sha256``, ...), if any."""
    path = Path(root) / "MANIFEST.tsv"
    if not path.is_file():
        return {}
    lines = path.read_text().splitlines()
    header = lines[0].split("\t") if lines else []
    if "file" not in header or "sha256" not in header:
        raise DataError(f"{path}: expected a tab-separated header with 'file' and 'sha256' columns")
    fcol, hcol = header.index("file"), header.index("sha256")
    out = {}
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) > max(fcol, hcol):
            out[(Path(root) / parts[fcol]).resolve()] = parts[hcol].strip().lower()
    return out


def scan_features(store: FeatureSource, batch_size: int = 256) -> Iterator[int]:
    """Read every row of every stored dataset (regions, and pooled when stored apart) in batches.

    The reads themselves raise on NaN/Inf, naming the file and the row; yields the rows done after
    each batch.
    """
    kinds = (["regions"] if store.has_regions else []) + (["pooled"] if store.stores_pooled else [])
    n = store.num_rows
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        for kind in kinds:
            block = store.read(idx, kind)
            bad = ~np.isfinite(block)  # the stores check on read; kept for any other FeatureSource
            if bad.any():
                row = int(idx[np.argwhere(bad)[0][0]])
                raise DataError(f"{store.path}: NaN/Inf in {kind} features of row {row} "
                                f"({int(bad.sum())} value(s) in rows {idx[0]}..{idx[-1]})")
        yield int(idx[-1]) + 1
