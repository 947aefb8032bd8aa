"""The bad-input corpus: every case runs the real CLI in a subprocess and must fail cleanly.

Each case corrupts a copy of a tiny simulated CUB (or a score file, a study spec, a config value)
and asserts: a non-zero exit, exactly one error line naming the file, field or flag at fault, no
traceback, and the inputs and existing results byte for byte as they were (``digest_tree``).

The fixtures are built once per module: one ``zsl-bench run eszsl --sim tiny`` gives the pristine
dataset and a finished results directory; every case works on its own copy. Cases that start
``run`` / ``ablate`` import torch and the method registry (seconds each): all but the ones named in
issue 11 are marked ``slow``.

The cases call the CLI's ``main()`` in this process (``clicase.run_main``): the same code path as
the console script without a fresh interpreter and its imports, which cost seconds per case on a
loaded machine. ``test_in_process_outcome_equals_the_subprocess_one`` runs a sample both ways.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import scipy.io
from clicase import assert_clean_failure, cli_env, digest_tree, run_cli, run_main

CORPUS = "corpus"  # the --sim preset name under which a corrupted copy is loaded (not a generator preset)


# ------------------------------------------------------------------------------------ fixtures
@dataclass
class Base:
    root: Path  # module temp dir
    cache: Path  # ZSL_BENCH_CACHE holding the pristine tiny CUB
    pristine: Path  # <cache>/sim/tiny-seed0/CUB
    results: Path  # a finished `run eszsl --sim tiny --seeds 0` output directory


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("corpus")
    cache = root / "cache"
    results = root / "results"
    res = run_cli(["run", "eszsl", "--datasets", "cub", "--sim", "tiny", "--seeds", "0", "--no-mlflow",
                   "--out", results], env=cli_env(ZSL_BENCH_CACHE=str(cache)))
    assert res.returncode == 0, res.stderr
    assert (results / "results.csv").is_file()
    return Base(root, cache, cache / "sim" / "tiny-seed0" / "CUB", results)


def _copy_dataset(base: Base, case: str) -> tuple[Path, Path]:
    """A private cache holding a copy of the pristine CUB as preset ``corpus`` -> (cache, dataset dir)."""
    cache = base.root / "cases" / case / "cache"
    ddir = cache / "sim" / f"{CORPUS}-seed0" / "CUB"
    shutil.copytree(base.pristine, ddir)
    return cache, ddir


# ------------------------------------------------------------------------------------ file helpers
def _mat(d: Path) -> dict[str, Any]:
    return {k: v for k, v in scipy.io.loadmat(str(d / "att_splits.mat")).items() if not k.startswith("__")}


def _edit_mat(d: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    mat = _mat(d)
    fn(mat)
    scipy.io.savemat(str(d / "att_splits.mat"), mat)


def _index(d: Path) -> dict[str, np.ndarray]:
    with np.load(d / "image_index.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _edit_index(d: Path, fn: Callable[[dict[str, np.ndarray]], None]) -> None:
    z = _index(d)
    fn(z)
    np.savez(d / "image_index.npz", **z)


def _loc0(mat: dict[str, Any], key: str) -> np.ndarray:
    return mat[key].ravel().astype(np.int64) - 1


def _set_loc(mat: dict[str, Any], key: str, rows0: np.ndarray) -> None:
    mat[key] = (np.asarray(rows0) + 1).astype(np.uint16).reshape(-1, 1)


def _labels(d: Path) -> np.ndarray:
    return _index(d)["labels"].astype(np.int64)


def _edit_store(d: Path, fn: Callable[[h5py.File], None]) -> None:
    with h5py.File(d / "features.h5", "a") as h5:
        fn(h5)


def _regions(d: Path) -> np.ndarray:
    with h5py.File(d / "features.h5", "r") as h5:
        return np.asarray(h5["regions"][()])


def _rewrite_store(d: Path, **datasets: Any) -> None:
    """features.h5 with exactly ``datasets`` (and the original provenance)."""
    with h5py.File(d / "features.h5", "r") as h5:
        prov = h5.attrs["provenance"]
    (d / "features.h5").unlink()
    with h5py.File(d / "features.h5", "w") as h5:
        h5.attrs["provenance"] = prov
        for key, value in datasets.items():
            h5[key] = value


# ------------------------------------------------------------------------------------ dataset cases
def zero_att_class(d: Path) -> None:
    _edit_mat(d, lambda m: m["att"].__setitem__((slice(None), 3), 0.0))


def zero_att_two_classes(d: Path) -> None:
    def fn(m: dict[str, Any]) -> None:
        m["att"][:, 5] = 0.0
        m["att"][:, 6] = 0.0
    _edit_mat(d, fn)


def nan_att(d: Path) -> None:
    _edit_mat(d, lambda m: m["att"].__setitem__((2, 1), np.nan))


def inf_att(d: Path) -> None:
    _edit_mat(d, lambda m: m["att"].__setitem__((0, 0), np.inf))


def transposed_att(d: Path) -> None:
    def fn(m: dict[str, Any]) -> None:
        m["att"] = m["att"].T.copy()
        m.pop("original_att", None)
    _edit_mat(d, fn)


def string_att(d: Path) -> None:
    _edit_mat(d, lambda m: m.__setitem__("att", np.array([["a", "b"]])))


def original_att_shape(d: Path) -> None:
    def fn(m: dict[str, Any]) -> None:
        m["original_att"] = np.ones((3, 8))
    _edit_mat(d, fn)


def missing_trainval(d: Path) -> None:
    _edit_mat(d, lambda m: m.pop("trainval_loc"))


def missing_att(d: Path) -> None:
    _edit_mat(d, lambda m: m.pop("att"))


def zero_based_locs(d: Path) -> None:
    def fn(m: dict[str, Any]) -> None:
        for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc", "train_loc", "val_loc"):
            m[key] = m[key] - 1
    _edit_mat(d, fn)


def out_of_range_loc(d: Path) -> None:
    def fn(m: dict[str, Any]) -> None:
        tu = _loc0(m, "test_unseen_loc")
        tu[0] = 500
        _set_loc(m, "test_unseen_loc", tu)
    _edit_mat(d, fn)


def fractional_loc(d: Path) -> None:
    def fn(m: dict[str, Any]) -> None:
        m["val_loc"] = m["val_loc"].astype(np.float64) + 0.5
    _edit_mat(d, fn)


def duplicate_loc(d: Path) -> None:
    def fn(m: dict[str, Any]) -> None:
        tu = _loc0(m, "test_unseen_loc")
        tu[1] = tu[0]
        _set_loc(m, "test_unseen_loc", tu)
    _edit_mat(d, fn)


def overlapping_splits(d: Path) -> None:
    def fn(m: dict[str, Any]) -> None:
        ts = _loc0(m, "test_seen_loc")
        _set_loc(m, "test_seen_loc", np.concatenate([ts, _loc0(m, "trainval_loc")[:1]]))
    _edit_mat(d, fn)


def splits_not_covering(d: Path) -> None:
    _edit_mat(d, lambda m: _set_loc(m, "trainval_loc", _loc0(m, "trainval_loc")[1:]))


def truncated_mat(d: Path) -> None:
    raw = (d / "att_splits.mat").read_bytes()
    (d / "att_splits.mat").write_bytes(raw[: len(raw) // 3])


def text_mat(d: Path) -> None:
    (d / "att_splits.mat").write_text("att,trainval_loc\n1,2\n")


def empty_mat(d: Path) -> None:
    (d / "att_splits.mat").write_bytes(b"")


def names_count(d: Path) -> None:
    _edit_mat(d, lambda m: m.__setitem__("allclasses_names", m["allclasses_names"][:5]))


def train_loc_leaks_unseen(d: Path) -> None:
    def fn(m: dict[str, Any]) -> None:
        _set_loc(m, "train_loc", np.concatenate([_loc0(m, "train_loc"), _loc0(m, "test_unseen_loc")[:2]]))
    _edit_mat(d, fn)


def train_val_share_class(d: Path) -> None:
    labels = _labels(d)

    def fn(m: dict[str, Any]) -> None:
        tr = _loc0(m, "train_loc")
        c = labels[tr[0]]
        _set_loc(m, "val_loc", np.concatenate([_loc0(m, "val_loc"), tr[labels[tr] == c][:3]]))
    _edit_mat(d, fn)


def seen_class_without_test(d: Path) -> None:
    labels = _labels(d)

    def fn(m: dict[str, Any]) -> None:
        ts = _loc0(m, "test_seen_loc")
        c = labels[ts[0]]
        moved = ts[labels[ts] == c]
        _set_loc(m, "test_seen_loc", np.setdiff1d(ts, moved))
        _set_loc(m, "trainval_loc", np.concatenate([_loc0(m, "trainval_loc"), moved]))
    _edit_mat(d, fn)


def negative_loc(d: Path) -> None:
    def fn(m: dict[str, Any]) -> None:
        m["val_loc"] = m["val_loc"].astype(np.int16)
        m["val_loc"][0, 0] = -3
    _edit_mat(d, fn)


def _class_paths(d: Path, z: dict[str, np.ndarray]) -> None:
    """Image paths under class directories named as in att_splits.mat, as the real releases have."""
    names = [str(np.asarray(x).ravel()[0]) for x in _mat(d)["allclasses_names"].ravel()]
    z["image_files"] = np.array([f"images/{names[c]}/{i:06d}.jpg" for i, c in enumerate(z["labels"])])


def relabelled_image_with_paths(d: Path) -> None:
    def fn(z: dict[str, np.ndarray]) -> None:
        _class_paths(d, z)
        z["labels"] = z["labels"].copy()
        z["labels"][5] = (z["labels"][5] + 1) % 8
    _edit_index(d, fn)


def relabelled_unseen_image(d: Path) -> None:
    """A test_unseen image relabelled as a seen class; the paths name no class: both files named."""
    m = _mat(d)
    tu = _loc0(m, "test_unseen_loc")

    def fn(z: dict[str, np.ndarray]) -> None:
        z["labels"] = z["labels"].copy()
        z["labels"][tu[0]] = z["labels"][_loc0(m, "trainval_loc")[0]]
    _edit_index(d, fn)


def relabelled_test_seen_image(d: Path) -> None:
    m = _mat(d)
    ts, tu = _loc0(m, "test_seen_loc"), _loc0(m, "test_unseen_loc")

    def fn(z: dict[str, np.ndarray]) -> None:
        z["labels"] = z["labels"].copy()
        z["labels"][ts[0]] = z["labels"][tu[0]]
    _edit_index(d, fn)


def index_without_labels(d: Path) -> None:
    _edit_index(d, lambda z: z.pop("labels"))


def index_string_labels(d: Path) -> None:
    _edit_index(d, lambda z: z.__setitem__("labels", z["labels"].astype(str)))


def index_fractional_labels(d: Path) -> None:
    _edit_index(d, lambda z: z.__setitem__("labels", z["labels"] + 0.25))


def index_negative_label(d: Path) -> None:
    def fn(z: dict[str, np.ndarray]) -> None:
        z["labels"] = z["labels"].copy()
        z["labels"][7] = -1
    _edit_index(d, fn)


def index_label_out_of_range(d: Path) -> None:
    def fn(z: dict[str, np.ndarray]) -> None:
        z["labels"] = z["labels"].copy()
        z["labels"][9] = 8
    _edit_index(d, fn)


def index_files_length(d: Path) -> None:
    _edit_index(d, lambda z: z.__setitem__("image_files", z["image_files"][:-3]))


def index_short(d: Path) -> None:
    _edit_index(d, lambda z: z.update(labels=z["labels"][:-1], image_files=z["image_files"][:-1]))


def index_garbage(d: Path) -> None:
    (d / "image_index.npz").write_bytes(os.urandom(300))


def index_pickled(d: Path) -> None:
    np.savez(d / "image_index.npz", labels=np.array([{"a": 1}] * 160, dtype=object))


def store_nan_row(d: Path) -> None:
    _edit_store(d, lambda h5: h5["regions"].__setitem__((37, 3, 2), np.nan))


def store_inf_row(d: Path) -> None:
    _edit_store(d, lambda h5: h5["regions"].__setitem__((150, 0, 0), np.inf))


def store_nan_pooled(d: Path) -> None:
    reg = _regions(d)
    pooled = reg.astype(np.float32).mean(axis=2)
    pooled[101, 4] = np.nan
    _rewrite_store(d, regions=reg, pooled=pooled)


def store_width_mismatch(d: Path) -> None:
    reg = _regions(d)
    _rewrite_store(d, regions=reg, pooled=np.ones((len(reg), reg.shape[1] + 5), dtype=np.float32))


def store_rows_mismatch(d: Path) -> None:
    reg = _regions(d)
    _rewrite_store(d, regions=reg, pooled=np.ones((len(reg) - 2, reg.shape[1]), dtype=np.float32))


def store_zero_width_pooled(d: Path) -> None:
    _rewrite_store(d, pooled=np.ones((160, 0), dtype=np.float32))


def store_string_pooled(d: Path) -> None:
    _rewrite_store(d, pooled=np.array([["x"] * 4] * 160, dtype="S1"))


def store_int_regions(d: Path) -> None:
    _rewrite_store(d, regions=np.ones((160, 32, 16), dtype=np.int32))


def store_2d_regions(d: Path) -> None:
    _rewrite_store(d, regions=np.ones((160, 32), dtype=np.float16))


def store_zero_regions(d: Path) -> None:
    _rewrite_store(d, regions=np.ones((160, 32, 0), dtype=np.float16))


def store_provenance_not_json(d: Path) -> None:
    _edit_store(d, lambda h5: h5.attrs.__setitem__("provenance", "{source: simulated"))


def store_provenance_list(d: Path) -> None:
    _edit_store(d, lambda h5: h5.attrs.__setitem__("provenance", "[1, 2]"))


def store_no_datasets(d: Path) -> None:
    _rewrite_store(d, features=np.ones((160, 32), dtype=np.float32))


def store_regions_group(d: Path) -> None:
    (d / "features.h5").unlink()
    with h5py.File(d / "features.h5", "w") as h5:
        h5.create_group("regions")


def store_garbage(d: Path) -> None:
    (d / "features.h5").write_bytes(b"\x89HDF junk" + os.urandom(500))


def store_truncated(d: Path) -> None:
    raw = (d / "features.h5").read_bytes()
    (d / "features.h5").write_bytes(raw[: len(raw) // 2])


def store_short(d: Path) -> None:
    _rewrite_store(d, regions=_regions(d)[:-1])


def w2v_wrong_shape(d: Path) -> None:
    np.save(d / "w2v" / "CUB_attribute.npy", np.ones((5, 9), dtype=np.float32))


def w2v_transposed(d: Path) -> None:
    w = np.load(d / "w2v" / "CUB_attribute.npy")
    np.save(d / "w2v" / "CUB_attribute.npy", w.T.copy())


def w2v_nan(d: Path) -> None:
    w = np.load(d / "w2v" / "CUB_attribute.npy")
    w[1, 1] = np.nan
    np.save(d / "w2v" / "CUB_attribute.npy", w)


def w2v_garbage(d: Path) -> None:
    (d / "w2v" / "CUB_attribute.npy").write_bytes(b"\x93NUMPY garbage")


class _RunsCode:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch /tmp/zsl-corpus-pwned",))


def w2v_evil_pickle(d: Path) -> None:
    (d / "w2v" / "CUB_attribute.npy").unlink()
    (d / "w2v" / "CUB_attribute.pkl").write_bytes(pickle.dumps(_RunsCode(), protocol=3))


def sim_json_bad(d: Path) -> None:
    (d / "sim.json").write_text("{preset: tiny")


def sim_json_list(d: Path) -> None:
    (d / "sim.json").write_text("[1, 2, 3]")


def msdn_wrong_layout(d: Path) -> None:
    (d / "features.h5").unlink()
    with h5py.File(d / "feature_map_ResNet_101_CUB.hdf5", "w") as h5:
        h5["feature_map"] = np.zeros((160, 8, 4), dtype=np.float32)


def msdn_labels_disagree(d: Path) -> None:
    (d / "features.h5").unlink()
    labels = _labels(d)
    with h5py.File(d / "feature_map_ResNet_101_CUB.hdf5", "w") as h5:
        h5["feature_map"] = np.zeros((160, 8, 2, 2), dtype=np.float32)
        h5["labels"] = np.roll(labels, 1)


def _dir_instead(name: str) -> Callable[[Path], None]:
    def fn(d: Path) -> None:
        (d / name).unlink()
        (d / name).mkdir()
        (d / name / "x").write_text("x")
    return fn


@dataclass(frozen=True)
class DataCase:
    corrupt: Callable[[Path], None]
    names: tuple[str, ...]  # what the one error line must mention (case-insensitive)
    command: str = "verify"  # data verify or data info
    slow: bool = False  # variants of a case kept in the default run; `-m slow` runs them


DATA_CASES: dict[str, DataCase] = {
    # att_splits.mat
    "zero_att_class": DataCase(zero_att_class, ("att_splits.mat", "'att'", "all zero", "class 3", "sim_class_003")),
    "zero_att_two_classes": DataCase(zero_att_two_classes, ("att_splits.mat", "all zero", "class 5", "2 class"), slow=True),
    "zero_att_class_info": DataCase(zero_att_class, ("att_splits.mat", "all zero", "class 3"), "info", slow=True),
    "nan_att": DataCase(nan_att, ("att_splits.mat", "'att'", "NaN/Inf")),
    "inf_att": DataCase(inf_att, ("att_splits.mat", "'att'", "NaN/Inf"), slow=True),
    "transposed_att": DataCase(transposed_att, ("att_splits.mat", "'att'", "transposed")),
    "string_att": DataCase(string_att, ("att_splits.mat", "'att'", "numeric"), slow=True),
    "original_att_shape": DataCase(original_att_shape, ("att_splits.mat", "'original_att'"), slow=True),
    "missing_trainval_loc": DataCase(missing_trainval, ("att_splits.mat", "missing key 'trainval_loc'")),
    "missing_att": DataCase(missing_att, ("att_splits.mat", "missing key 'att'"), slow=True),
    "zero_based_locs": DataCase(zero_based_locs, ("att_splits.mat", "_loc'", "1-based")),
    "out_of_range_loc": DataCase(out_of_range_loc, ("att_splits.mat", "'test_unseen_loc'", "out of range")),
    "fractional_loc": DataCase(fractional_loc, ("att_splits.mat", "'val_loc'", "integer"), slow=True),
    "negative_loc": DataCase(negative_loc, ("att_splits.mat", "'val_loc'", "1-based"), slow=True),
    "duplicate_loc": DataCase(duplicate_loc, ("att_splits.mat", "'test_unseen_loc'", "more than once")),
    "overlapping_splits": DataCase(overlapping_splits, ("att_splits.mat", "'trainval_loc'", "'test_seen_loc'")),
    "splits_not_covering": DataCase(splits_not_covering, ("att_splits.mat", "cover")),
    "truncated_mat": DataCase(truncated_mat, ("att_splits.mat", "not a readable MATLAB")),
    "text_mat": DataCase(text_mat, ("att_splits.mat", "not a readable MATLAB"), slow=True),
    "empty_mat": DataCase(empty_mat, ("att_splits.mat", "not a readable MATLAB"), slow=True),
    "names_count": DataCase(names_count, ("att_splits.mat", "'allclasses_names'"), slow=True),
    "train_loc_leaks_unseen": DataCase(train_loc_leaks_unseen, ("att_splits.mat", "'train_loc'", "test_unseen")),
    "train_val_share_class": DataCase(train_val_share_class, ("att_splits.mat", "'train_loc'", "'val_loc'")),
    "seen_class_without_test": DataCase(seen_class_without_test, ("att_splits.mat", "no test_seen image")),
    # image_index.npz
    "relabelled_image_paths": DataCase(relabelled_image_with_paths,
                                       ("image_index.npz", "'labels'", "image 5", "its path names class")),
    "relabelled_image_paths_info": DataCase(relabelled_image_with_paths, ("image_index.npz", "image 5"), "info", slow=True),
    "relabelled_unseen_image": DataCase(relabelled_unseen_image,
                                        ("att_splits.mat", "image_index.npz", "mislabels image")),
    "relabelled_test_seen_image": DataCase(relabelled_test_seen_image,
                                           ("att_splits.mat", "image_index.npz", "'test_seen_loc'")),
    "index_without_labels": DataCase(index_without_labels, ("image_index.npz", "missing key 'labels'")),
    "index_string_labels": DataCase(index_string_labels, ("image_index.npz", "'labels'", "integer")),
    "index_fractional_labels": DataCase(index_fractional_labels, ("image_index.npz", "'labels'", "integer"), slow=True),
    "index_negative_label": DataCase(index_negative_label, ("image_index.npz", "'labels'", "negative"), slow=True),
    "index_label_out_of_range": DataCase(index_label_out_of_range, ("image_index.npz", "'labels'", "out of range")),
    "index_files_length": DataCase(index_files_length, ("image_index.npz", "'image_files'"), slow=True),
    "index_short": DataCase(index_short, ("att_splits.mat", "image_index.npz", "out of range")),
    "index_garbage": DataCase(index_garbage, ("image_index.npz", "not a readable .npz"), slow=True),
    "index_pickled": DataCase(index_pickled, ("image_index.npz", "not a readable .npz")),
    # features.h5
    "store_nan_row": DataCase(store_nan_row, ("features.h5", "NaN/Inf", "row 37")),
    "store_inf_row": DataCase(store_inf_row, ("features.h5", "NaN/Inf", "row 150"), slow=True),
    "store_nan_pooled": DataCase(store_nan_pooled, ("features.h5", "NaN/Inf", "row 101")),
    "store_width_mismatch": DataCase(store_width_mismatch, ("features.h5", "'regions'", "'pooled'", "width")),
    "store_width_mismatch_info": DataCase(store_width_mismatch, ("features.h5", "width"), "info", slow=True),
    "store_rows_mismatch": DataCase(store_rows_mismatch, ("features.h5", "'regions'", "'pooled'", "rows")),
    "store_zero_width_pooled": DataCase(store_zero_width_pooled, ("features.h5", "'pooled'", "(160, 0)")),
    "store_string_pooled": DataCase(store_string_pooled, ("features.h5", "'pooled'", "floating-point", "dtype")),
    "store_int_regions": DataCase(store_int_regions, ("features.h5", "'regions'", "int32"), slow=True),
    "store_2d_regions": DataCase(store_2d_regions, ("features.h5", "'regions'", "(N, F, R)"), slow=True),
    "store_zero_regions": DataCase(store_zero_regions, ("features.h5", "'regions'", "(160, 32, 0)"), slow=True),
    "store_provenance_not_json": DataCase(store_provenance_not_json, ("features.h5", "'provenance'", "JSON")),
    "store_provenance_not_json_info": DataCase(store_provenance_not_json, ("features.h5", "'provenance'"), "info", slow=True),
    "store_provenance_list": DataCase(store_provenance_list, ("features.h5", "'provenance'", "JSON object"), slow=True),
    "store_no_datasets": DataCase(store_no_datasets, ("features.h5", "'regions'", "'pooled'")),
    "store_regions_group": DataCase(store_regions_group, ("features.h5", "'regions'", "dataset"), slow=True),
    "store_garbage": DataCase(store_garbage, ("features.h5", "HDF5")),
    "store_truncated": DataCase(store_truncated, ("features.h5", "HDF5"), slow=True),
    "store_short": DataCase(store_short, ("features.h5", "159 rows", "expected 160")),
    "msdn_wrong_layout": DataCase(msdn_wrong_layout, ("feature_map_ResNet_101_CUB.hdf5", "'feature_map'")),
    "msdn_labels_disagree": DataCase(msdn_labels_disagree, ("feature_map_ResNet_101_CUB.hdf5", "'labels'")),
    # word vectors, provenance
    "w2v_wrong_shape": DataCase(w2v_wrong_shape, ("CUB_attribute.npy", "shape (5, 9)")),
    "w2v_transposed": DataCase(w2v_transposed, ("CUB_attribute.npy", "transposed"), slow=True),
    "w2v_nan": DataCase(w2v_nan, ("CUB_attribute.npy", "NaN/Inf")),
    "w2v_garbage": DataCase(w2v_garbage, ("CUB_attribute.npy", "not a readable .npy"), slow=True),
    "w2v_evil_pickle": DataCase(w2v_evil_pickle, ("CUB_attribute.pkl", "pickle refused")),
    "sim_json_bad": DataCase(sim_json_bad, ("sim.json", "not valid JSON")),
    "sim_json_list": DataCase(sim_json_list, ("sim.json", "JSON object"), slow=True),
    # a directory where a file belongs: an error, not "absent" (labels or features silently dropped)
    "index_is_dir": DataCase(_dir_instead("image_index.npz"), ("image_index.npz", "not a regular file")),
    "store_is_dir": DataCase(_dir_instead("features.h5"), ("features.h5", "not a regular file")),
    "w2v_is_dir": DataCase(_dir_instead("w2v/CUB_attribute.npy"), ("CUB_attribute.npy", "not a regular file")),
}


@pytest.mark.parametrize("case", [pytest.param(k, marks=[pytest.mark.slow] if v.slow else [])
                                  for k, v in DATA_CASES.items()])
def test_bad_dataset(case: str, base: Base) -> None:
    spec = DATA_CASES[case]
    cache, ddir = _copy_dataset(base, case)
    spec.corrupt(ddir)
    before = digest_tree([cache, base.results])
    res = run_main(["data", spec.command, "cub", "--sim", CORPUS], env={"ZSL_BENCH_CACHE": str(cache)})
    assert_clean_failure(res, names=spec.names)
    assert digest_tree([cache, base.results]) == before
    assert not Path("/tmp/zsl-corpus-pwned").exists()


@pytest.mark.parametrize("dataset", ["CUB", pytest.param("SUN", marks=pytest.mark.slow)])
def test_relabelled_real_image_names_the_labels_file(dataset: str, shared_root: Path, tmp_path: Path) -> None:
    """One image of the real metadata relabelled in image_index.npz: blamed on image_index.npz only."""
    dst = tmp_path / dataset
    dst.mkdir()
    shutil.copy(shared_root / dataset / "att_splits.mat", dst)
    with np.load(shared_root / dataset / "image_index.npz", allow_pickle=False) as z:
        index = {k: z[k] for k in z.files}
    index["labels"] = index["labels"].copy()
    index["labels"][1234] = (index["labels"][1234] + 1) % (index["labels"].max() + 1)
    np.savez(dst / "image_index.npz", **index)
    before = digest_tree([tmp_path])
    res = run_main(["data", "info", dataset.lower(), "--data-root", tmp_path])
    line = assert_clean_failure(res, names=["image_index.npz", "'labels'", "image 1234", "1 image(s) disagree"])
    assert "att_splits.mat" not in line
    assert digest_tree([tmp_path]) == before


def test_unreadable_data_root_name(base: Base, tmp_path: Path) -> None:
    """A data root the OS refuses to look into (here: a name over NAME_MAX)."""
    res = run_main(["data", "info", "cub", "--data-root", tmp_path / ("x" * 300)])
    assert_clean_failure(res, names=["xxxxxxxx", "cannot access"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory: permissions cannot make one unreadable")
def test_unreadable_dataset_directory(base: Base) -> None:
    cache, ddir = _copy_dataset(base, "unreadable_dir")
    ddir.chmod(0)
    try:
        res = run_main(["data", "verify", "cub", "--sim", CORPUS], env={"ZSL_BENCH_CACHE": str(cache)})
    finally:
        ddir.chmod(0o755)
    assert_clean_failure(res, names=["CUB"])


# ------------------------------------------------------------------------------------ evaluate
def _scores_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 5)  # classes 0,1 seen; 2,3 unseen; 20 rows
    scores = rng.random((20, 4)) + np.eye(4)[labels]
    return {"scores": scores, "labels": labels, "seen_classes": np.array([0, 1]),
            "unseen_classes": np.array([2, 3]), "test_seen_loc": np.arange(10), "test_unseen_loc": np.arange(10, 20)}


def _ev(**change: Any) -> Callable[[dict[str, np.ndarray]], None]:
    def fn(a: dict[str, np.ndarray]) -> None:
        for k, v in change.items():
            if v is None:
                a.pop(k)
            else:
                a[k] = v(a[k]) if callable(v) else v
    return fn


EVAL_CASES: dict[str, tuple[Callable[[dict[str, np.ndarray]], None] | None, tuple[str, ...], tuple[str, ...]]] = {
    # name: (change to the arrays, extra CLI args, names)
    "seen_idx_repeated": (_ev(test_seen_loc=lambda x: np.concatenate([x, x[:1]])), (), ("test_seen_loc", "row 0",
                                                                                        "more than once")),
    "unseen_idx_repeated": (_ev(test_unseen_loc=lambda x: np.concatenate([x, x[3:5]])), (),
                            ("test_unseen_loc", "more than once")),
    "seen_idx_all_twice": (_ev(test_seen_loc=lambda x: np.concatenate([x, x])), (), ("test_seen_loc", "10 repeated")),
    "idx_overlap": (_ev(test_unseen_loc=lambda x: np.concatenate([x, [0]])), (), ("test_unseen_loc", "row 0",
                                                                                 "unseen_classes")),
    "scores_nan": (_ev(scores=lambda x: np.where(np.arange(80).reshape(20, 4) == 9, np.nan, x)), (),
                   ("scores", "non-finite", "row 2")),
    "scores_1d": (_ev(scores=lambda x: x[:, 0]), (), ("scores", "2-D")),
    "scores_strings": (_ev(scores=lambda x: x.astype(str)), (), ("scores", "numeric")),
    "labels_out_of_range": (_ev(labels=lambda x: np.where(np.arange(20) == 4, 7, x)), (), ("labels", "7")),
    "labels_length": (_ev(labels=lambda x: x[:-1]), (), ("labels", "19")),
    "missing_key": (_ev(unseen_classes=None), (), ("unseen_classes", "missing key")),
    "seen_classes_dup": (_ev(seen_classes=np.array([0, 0, 1])), (), ("seen_classes", "more than once")),
    "classes_overlap": (_ev(unseen_classes=np.array([1, 2, 3])), (), ("seen_classes", "unseen_classes", "share")),
    "fractional_idx": (_ev(test_seen_loc=lambda x: x + 0.5), (), ("test_seen_loc", "integer")),
    "negative_idx": (_ev(test_unseen_loc=lambda x: x - 11), (), ("test_unseen_loc", "-1")),
    "empty_idx": (_ev(test_seen_loc=np.array([], dtype=np.int64)), (), ("test_seen_loc", "empty")),
    "class_without_rows": (_ev(test_unseen_loc=lambda x: x[:5]), (), ("unseen_classes", "test_unseen_loc")),
    "row_wrong_class": (_ev(test_seen_loc=lambda x: np.concatenate([x, [12]])), (), ("test_seen_loc", "row 12")),
    "gamma_nan": (None, ("--gamma", "nan"), ("--gamma",)),
    "gamma_inf": (None, ("--gamma", "inf"), ("--gamma",)),
}


@pytest.mark.parametrize("case", list(EVAL_CASES))
def test_bad_score_file(case: str, base: Base, tmp_path: Path) -> None:
    change, extra, names = EVAL_CASES[case]
    arrays = _scores_arrays()
    if change is not None:
        change(arrays)
    path = tmp_path / "scores.npz"
    np.savez(path, **arrays)
    before = digest_tree([path, base.results])
    res = run_main(["evaluate", path, *extra])
    line = assert_clean_failure(res, names=names)
    if change is not None:
        assert "scores.npz" in line
    assert digest_tree([path, base.results]) == before


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"not a zip at all"])
def test_unreadable_score_file(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "scores.npz"
    path.write_bytes(content)
    assert_clean_failure(run_main(["evaluate", path]), names=["scores.npz"])


def test_missing_score_file(tmp_path: Path) -> None:
    assert_clean_failure(run_main(["evaluate", tmp_path / "none.npz"]), names=["none.npz", "no such file"])


# ------------------------------------------------------------------------------------ run: config values
RUN = ["run", "eszsl", "--datasets", "cub", "--sim", "tiny", "--seeds", "0", "--no-mlflow"]


@dataclass(frozen=True)
class RunCase:
    args: tuple[str, ...]
    names: tuple[str, ...]
    slow: bool = True
    prepare: Callable[[Path, Path], list[str]] | None = field(default=None)  # (case dir, out) -> extra args


def _set(*items: str) -> tuple[str, ...]:
    return tuple(a for item in items for a in ("--set", item))


def _config_file(text: str) -> Callable[[Path, Path], list[str]]:
    def prep(d: Path, out: Path) -> list[str]:
        (d / "cfg.yaml").write_text(text)
        return ["--config", str(d / "cfg.yaml")]
    return prep


def _out_is_file(d: Path, out: Path) -> list[str]:
    (d / "afile").write_text("not a directory\n")
    return ["--out", str(d / "afile")]


def _out_under_file(d: Path, out: Path) -> list[str]:
    (d / "afile").write_text("not a directory\n")
    return ["--out", str(d / "afile" / "sub")]


def _results_is_dir(d: Path, out: Path) -> list[str]:
    fresh = d / "fresh"
    (fresh / "results.csv").mkdir(parents=True)
    return ["--out", str(fresh)]


def _config_yaml_is_dir(d: Path, out: Path) -> list[str]:
    fresh = d / "fresh"
    (fresh / "config.yaml").mkdir(parents=True)
    return ["--out", str(fresh)]


RUN_CASES: dict[str, RunCase] = {
    # issue 11's four, in the default run
    "lr_inf": RunCase(_set("train.lr=inf"), ("train.lr", "inf", "finite"), slow=False),
    "gamma_nan": RunCase(_set("eval.gamma=nan"), ("eval.gamma", "nan", "finite"), slow=False),
    "eval_batch_size_0": RunCase(_set("train.eval_batch_size=0"), ("train.eval_batch_size", ">= 1"), slow=False),
    "grad_clip_negative": RunCase(_set("train.grad_clip=-1"), ("train.grad_clip", ">= 0"), slow=False),
    "out_is_file": RunCase((), ("--out", "afile", "not a directory"), slow=False, prepare=_out_is_file),
    "results_csv_is_dir": RunCase((), ("--out", "results.csv", "not a regular file"), slow=False,
                                  prepare=_results_is_dir),
    # more config values
    "lr_minus_inf": RunCase(_set("train.lr=-inf"), ("train.lr", "finite")),
    "lr_nan": RunCase(_set("train.lr=nan"), ("train.lr", "finite")),
    "lr_yaml_inf": RunCase(_set("train.lr=.inf"), ("train.lr", "finite")),
    "lr_zero": RunCase(_set("train.lr=0"), ("train.lr", "> 0")),
    "lr_string": RunCase(_set("train.lr=fast"), ("train.lr", "number")),
    "gamma_inf": RunCase(_set("eval.gamma=inf"), ("eval.gamma", "finite")),
    "gamma_string": RunCase(_set("eval.gamma=high"), ("eval.gamma",)),
    "momentum_negative": RunCase(_set("train.momentum=-0.5"), ("train.momentum", ">= 0")),
    "weight_decay_nan": RunCase(_set("train.weight_decay=nan"), ("train.weight_decay", "finite")),
    "weight_decay_negative": RunCase(_set("train.weight_decay=-1e-4"), ("train.weight_decay", ">= 0")),
    "grad_clip_inf": RunCase(_set("train.grad_clip=inf"), ("train.grad_clip", "finite")),
    "epochs_inf": RunCase(_set("train.epochs=inf"), ("train.epochs", "integer")),
    "epochs_nan": RunCase(_set("train.epochs=nan"), ("train.epochs", "integer")),
    "epochs_fraction": RunCase(_set("train.epochs=1.5"), ("train.epochs", "integer")),
    "epochs_flag_negative": RunCase(("--epochs", "-1"), ("train.epochs", ">= 0")),
    "batch_size_zero": RunCase(_set("train.batch_size=0"), ("train.batch_size", ">= 1")),
    "eval_every_zero": RunCase(_set("train.eval_every=0"), ("train.eval_every", ">= 1")),
    "optimizer_unknown": RunCase(_set("train.optimizer=adagrad"), ("train.optimizer", "adamw")),
    "sampler_unknown": RunCase(_set("train.sampler=stratified"), ("train.sampler", "class_balanced")),
    "device_unknown": RunCase(("--device", "tpu"), ("train.device", "cuda")),
    "precision_unknown": RunCase(_set("train.precision=fp16"), ("train.precision", "fp32 or bf16")),
    "amp_renamed": RunCase(_set("train.amp=true"), ("train.amp", "train.precision")),
    "protocol_in_set": RunCase(_set("eval.protocol=oracle"), ("protocol", "oracle", "test-oracle")),
    "unknown_train_key": RunCase(_set("train.learning_rate=0.1"), ("train.learning_rate", "valid keys")),
    "unknown_method_key": RunCase(_set("method.lambda=1"), ("method.lambda", "alpha")),
    "method_alpha_inf": RunCase(_set("method.alpha=inf"), ("method.alpha", "finite")),
    "method_alpha_negative": RunCase(_set("method.alpha=-1"), ("method.alpha", "> 0")),
    "set_without_equals": RunCase(("--set", "train.lr"), ("--set", "SECTION.KEY=VALUE")),
    "set_bad_section": RunCase(_set("optim.lr=0.1"), ("--set", "optim.lr")),
    "seeds_negative": RunCase(("--seeds", "-1"), ("--seeds",)),
    "seeds_not_int": RunCase(("--seeds", "a,b"), ("--seeds",)),
    "sim_unknown_preset": RunCase(("--sim", "huge"), ("--sim", "huge")),
    "unknown_method": RunCase(("--datasets", "cub"), ("esszl",)),
    "unknown_dataset": RunCase(("--datasets", "cubb"), ("cubb",)),
    "config_missing": RunCase(("--config", "/nonexistent/cfg.yaml"), ("cfg.yaml", "not found")),
    "config_not_yaml": RunCase((), ("cfg.yaml", "YAML"), prepare=_config_file("train: [lr: 1\n")),
    "config_not_mapping": RunCase((), ("cfg.yaml", "mapping"), prepare=_config_file("- 1\n- 2\n")),
    "config_lr_inf": RunCase((), ("train.lr", "finite"), prepare=_config_file("train:\n  lr: .inf\n")),
    "config_bad_section": RunCase((), ("optim",), prepare=_config_file("optim:\n  lr: 0.1\n")),
    "out_under_file": RunCase((), ("--out", "not a directory"), prepare=_out_under_file),
    "config_yaml_is_dir": RunCase((), ("config.yaml", "not a regular file"), prepare=_config_yaml_is_dir),
}


@pytest.mark.parametrize("case", [pytest.param(k, marks=[pytest.mark.slow] if v.slow else [])
                                  for k, v in RUN_CASES.items()])
def test_bad_run_input(case: str, base: Base, tmp_path: Path) -> None:
    spec = RUN_CASES[case]
    out = tmp_path / "out"
    shutil.copytree(base.results, out)
    extra = spec.prepare(tmp_path, out) if spec.prepare else []
    args = [*RUN, "--out", str(out), *spec.args, *extra]
    if case == "unknown_method":
        args[1] = "esszl"
    before = digest_tree([out, base.cache])
    res = run_main(args, env={"ZSL_BENCH_CACHE": str(base.cache)})
    assert_clean_failure(res, names=spec.names)
    assert digest_tree([out, base.cache]) == before


def test_nan_features_stop_training_naming_file_and_row(base: Base, tmp_path: Path) -> None:
    """NaN in one row of the store: `run` stops at the first batch that reads it, not after training."""
    cache = tmp_path / "cache"
    shutil.copytree(base.cache / "sim" / "tiny-seed0", cache / "sim" / "tiny-seed0")
    _edit_store(cache / "sim" / "tiny-seed0" / "CUB", lambda h5: h5["regions"].__setitem__((21, 0, 0), np.nan))
    out = tmp_path / "out"
    shutil.copytree(base.results, out)
    before = digest_tree([out / "results.csv", out / "curves"])
    res = run_cli([*RUN, "--seeds", "1", "--out", str(out)], env=cli_env(ZSL_BENCH_CACHE=str(cache)))
    assert_clean_failure(res, names=["features.h5", "NaN/Inf", "row 21"])
    assert digest_tree([out / "results.csv", out / "curves"]) == before


# ------------------------------------------------------------------------------------ ablate: study specs
SPEC_BASE = {"name": "corpus", "methods": ["eszsl"], "datasets": ["cub"], "seeds": [0], "sim": "tiny"}

SPEC_CASES: dict[str, tuple[Any, tuple[str, ...], bool]] = {
    # name: (spec content (dict merged into SPEC_BASE, or raw text), names, slow)
    "empty_grid": ({"grid": {}}, ("grid", "empty"), False),
    "grid_empty_variants": ({"grid": {"variants": {}}}, ("grid", "empty"), True),
    "grid_empty_sweep": ({"grid": {"sweep": {}}}, ("grid", "empty"), True),
    "sweep_empty_list": ({"grid": {"sweep": {"method.alpha": []}}}, ("grid.sweep.method.alpha", "non-empty"), True),
    "sweep_nan": ({"grid": {"sweep": {"method.alpha": [float("nan")]}}}, ("method.alpha", "finite"), True),
    "base_lr_inf": ({"base": {"train.lr": float("inf")}}, ("train.lr", "finite"), True),
    "search_low_inf": ({"search": {"space": {"method.alpha": {"type": "float", "low": 0.1, "high": float("inf")}},
                                   "n_trials": 2}}, ("search", "high", "finite"), True),
    "unknown_key": ({"gird": {"sweep": {"method.alpha": [1]}}}, ("gird",), True),
    "seeds_duplicate": ({"seeds": [0, 0]}, ("seeds", "distinct"), True),
    "not_mapping": ("- just\n- a list\n", ("spec.yaml", "mapping"), True),
}


@pytest.mark.parametrize("case", [pytest.param(k, marks=[pytest.mark.slow] if v[2] else [])
                                  for k, v in SPEC_CASES.items()])
def test_bad_study_spec(case: str, base: Base, tmp_path: Path) -> None:
    import yaml

    content, names, _ = SPEC_CASES[case]
    path = tmp_path / "spec.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump({**SPEC_BASE, **content}))
    out = tmp_path / "out"
    shutil.copytree(base.results, out)
    before = digest_tree([out, path])
    res = run_main(["ablate", path, "--out", out, "--no-mlflow", "--no-progress"],
                   env={"ZSL_BENCH_CACHE": str(base.cache)})
    assert_clean_failure(res, names=names)
    assert digest_tree([out, path]) == before


# ------------------------------------------------------------------------------------ data import
def _msdn_source(d: Path, base: Base, n: int = 160) -> Path:
    src = d / "src.hdf5"
    with h5py.File(src, "w") as h5:
        h5["feature_map"] = np.ones((n, 4, 2, 2), dtype=np.float32)
        h5["labels"] = _labels(base.pristine)[:n]
    return src


def _import_root(d: Path, base: Base) -> Path:
    root = d / "root"
    shutil.copytree(base.pristine, root / "CUB", ignore=shutil.ignore_patterns("features.h5"))
    return root


def imp_index_without_labels(d: Path, base: Base) -> list[str]:
    root = _import_root(d, base)
    _edit_index(root / "CUB", lambda z: z.pop("labels"))
    return ["cub", str(_msdn_source(d, base)), "--data-root", str(root)]


def imp_index_string_labels(d: Path, base: Base) -> list[str]:
    root = _import_root(d, base)
    _edit_index(root / "CUB", lambda z: z.__setitem__("labels", z["labels"].astype(str)))
    return ["cub", str(_msdn_source(d, base)), "--data-root", str(root)]


def imp_out_is_dir(d: Path, base: Base) -> list[str]:
    root = _import_root(d, base)
    (d / "outdir").mkdir()
    return ["cub", str(_msdn_source(d, base)), "--data-root", str(root), "--out", str(d / "outdir")]


def imp_src_missing(d: Path, base: Base) -> list[str]:
    return ["cub", str(d / "src.hdf5"), "--data-root", str(_import_root(d, base))]


def imp_src_garbage(d: Path, base: Base) -> list[str]:
    (d / "src.hdf5").write_bytes(os.urandom(1000))
    return ["cub", str(d / "src.hdf5"), "--data-root", str(_import_root(d, base))]


def imp_src_3d(d: Path, base: Base) -> list[str]:
    with h5py.File(d / "src.hdf5", "w") as h5:
        h5["feature_map"] = np.ones((160, 4, 4), dtype=np.float32)
        h5["labels"] = _labels(base.pristine)
    return ["cub", str(d / "src.hdf5"), "--data-root", str(_import_root(d, base))]


def imp_src_nan(d: Path, base: Base) -> list[str]:
    src = _msdn_source(d, base)
    with h5py.File(src, "a") as h5:
        h5["feature_map"][77, 0, 0, 0] = np.nan
    return ["cub", str(src), "--data-root", str(_import_root(d, base))]


def imp_labels_differ(d: Path, base: Base) -> list[str]:
    src = _msdn_source(d, base)
    with h5py.File(src, "a") as h5:
        lab = h5["labels"][()]
        del h5["labels"]
        h5["labels"] = np.roll(lab, 3)
    return ["cub", str(src), "--data-root", str(_import_root(d, base))]


def imp_rows_differ(d: Path, base: Base) -> list[str]:
    return ["cub", str(_msdn_source(d, base, n=150)), "--data-root", str(_import_root(d, base))]


IMPORT_CASES: dict[str, tuple[Callable[[Path, Base], list[str]], tuple[str, ...]]] = {
    "index_without_labels": (imp_index_without_labels, ("image_index.npz", "missing key 'labels'")),
    "index_string_labels": (imp_index_string_labels, ("image_index.npz", "'labels'", "integer")),
    "out_is_dir": (imp_out_is_dir, ("--out", "outdir", "directory")),
    "src_missing": (imp_src_missing, ("src.hdf5", "no such file")),
    "src_garbage": (imp_src_garbage, ("src.hdf5", "HDF5")),
    "src_3d": (imp_src_3d, ("src.hdf5", "'feature_map'")),
    "src_nan": (imp_src_nan, ("src.hdf5", "NaN/Inf", "row 77")),
    "labels_differ": (imp_labels_differ, ("src.hdf5", "'labels'", "image_index.npz")),
    "rows_differ": (imp_rows_differ, ("src.hdf5", "150 rows")),
}


@pytest.mark.parametrize("case", list(IMPORT_CASES))
def test_bad_import(case: str, base: Base, tmp_path: Path) -> None:
    prepare, names = IMPORT_CASES[case]
    args = prepare(tmp_path, base)
    before = digest_tree([tmp_path])
    res = run_main(["data", "import", *args])
    assert_clean_failure(res, names=names)
    assert digest_tree([tmp_path]) == before  # no store, no temporary file left behind


# ------------------------------------------------------------------------------------ in-process = subprocess
def _prepare(kind: str, case: str, base: Base, d: Path) -> tuple[list[str], dict[str, str], list[Path]]:
    """(args, env, paths that must stay unchanged) of one corpus case, as its test builds them."""
    if kind == "data":
        spec = DATA_CASES[case]
        cache, ddir = _copy_dataset(base, f"both-ways-{case}")
        spec.corrupt(ddir)
        return ["data", spec.command, "cub", "--sim", CORPUS], {"ZSL_BENCH_CACHE": str(cache)}, [cache]
    if kind == "evaluate":
        change, extra, _ = EVAL_CASES[case]
        arrays = _scores_arrays()
        if change is not None:
            change(arrays)
        np.savez(d / "scores.npz", **arrays)
        return ["evaluate", str(d / "scores.npz"), *extra], {}, [d / "scores.npz"]
    if kind == "import":
        return ["data", "import", *IMPORT_CASES[case][0](d, base)], {}, [d]
    assert kind == "run"
    out = d / "out"
    shutil.copytree(base.results, out)
    rc = RUN_CASES[case]
    extra = rc.prepare(d, out) if rc.prepare else []
    return [*RUN, "--out", str(out), *rc.args, *extra], {"ZSL_BENCH_CACHE": str(base.cache)}, [out, base.cache]


@pytest.mark.parametrize("kind, case", [
    ("data", "nan_att"), ("evaluate", "missing_key"), ("run", "lr_inf"),
    pytest.param("data", "zero_att_class_info", marks=pytest.mark.slow),
    pytest.param("import", "src_nan", marks=pytest.mark.slow),
    pytest.param("run", "results_csv_is_dir", marks=pytest.mark.slow),
])
def test_in_process_outcome_equals_the_subprocess_one(kind: str, case: str, base: Base, tmp_path: Path) -> None:
    """The corpus runs ``main()`` in-process (``clicase.run_main``): a sample also runs as a real
    ``python -m zsl_bench`` subprocess, with the same exit code and the same error line."""
    args, env, watched = _prepare(kind, case, base, tmp_path)
    before = digest_tree(watched)
    here = run_main(args, env=env)
    there = run_cli(args, env=cli_env(**env))
    assert_clean_failure(there)
    assert (here.returncode, here.error_lines) == (there.returncode, there.error_lines)
    assert digest_tree(watched) == before
