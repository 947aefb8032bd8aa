"""Pieces shared by every version of the simulated-benchmark generator (``zsl_bench.data.sim``).

Class structure (real or generated semantics, splits), image counts, the on-disk writers, the cache
lock and the statistics of class semantics. Versions differ in their model (``sim_v1``: generator
``zsl-bench-sim/1.2``; ``sim``: 2.x); what is here is used by both unchanged, so v1 stays bit-identical.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, DataError
from .datasets import DatasetSpec

log = logging.getLogger(__name__)

PRESETS = ("tiny", "small", "full")
GROUND_TRUTH_NAME = "ground_truth.npz"
META_NAME = "sim.json"
W2V_DIM = 300
# tiny: a few classes and attributes, the same for every dataset name (FLO: still no w2v).
TINY_SHAPE = dict(classes=8, seen=5, val=2, attributes=12, groups=3)


@dataclass(frozen=True)
class ScaleParams:
    """The scale fields every generator version shares (differ per preset and dataset).

    Subclasses add their model fields and set ``VERSION``; every field is recorded in ``sim.json``.
    """

    VERSION: ClassVar[str] = ""
    feature_dim: int = 256  # F
    grid_side: int = 7  # R = side²
    images_per_class: int = 40  # upper bound per class (small / tiny)
    max_images: int = 4000  # total budget: per class = clip(max_images // K, min, images_per_class)
    min_images_per_class: int = 5
    real_image_counts: bool = False  # full: the published per-class counts
    real_semantics: bool = True  # False: always generate (tiny)
    chunk_size: int = 256  # images rendered and written per step (bounds memory)
    test_seen_fraction: float = 0.2  # of each seen class's images (generated counts)

    def __post_init__(self) -> None:
        for name in ("feature_dim", "grid_side", "images_per_class", "max_images",
                     "min_images_per_class", "chunk_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sim parameter '{name}' must be >= 1, got {getattr(self, name)}")
        if self.min_images_per_class < 2:
            raise ConfigError("sim parameter 'min_images_per_class' must be >= 2 "
                              "(a seen class needs a trainval and a test-seen image)")
        check_unit_interval(self, ("test_seen_fraction",))


def check_unit_interval(params: Any, names: tuple[str, ...]) -> None:
    for name in names:
        v = getattr(params, name)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"sim parameter '{name}' must be in [0, 1], got {v}")


def check_non_negative(params: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(params, name) < 0:
            raise ConfigError(f"sim parameter '{name}' must be >= 0, got {getattr(params, name)}")



# --------------------------------------------------------------------------- class structure
@dataclass
class Structure:
    """Class semantics and split structure of one simulated dataset (everything but images)."""

    att: np.ndarray  # [A, K] float64, columns L2-normalised (as written to att_splits.mat)
    original_att: np.ndarray | None  # [A, K] (None for FLO, as published)
    strengths: np.ndarray  # [K, A] float32 in [0, 1], appearance strength of each attribute
    att_group: np.ndarray  # [A] int64
    group_names: list[str]
    latent_w2v: np.ndarray  # [A, 300] vectors the prototypes are drawn from
    w2v: np.ndarray | None  # [A, 300] written word vectors (None: FLO)
    class_names: list[str] | None
    seen: np.ndarray  # [S] sorted int64
    unseen: np.ndarray  # [U] sorted int64
    train_classes: np.ndarray  # validation 'train' classes (subset of seen)
    val_classes: np.ndarray  # validation 'val' classes (subset of seen)
    real_semantics: bool
    real_word_vectors: bool
    real_split: bool
    real_counts: dict[str, np.ndarray] | None = field(default=None)  # per class tv / ts / tu


def class_strengths(sem: np.ndarray) -> np.ndarray:
    """[A, K] semantics -> [K, A] appearance strengths in [0, 1].

    An attribute shows in a class to the extent it is above its average over classes (z-score,
    clipped to [0, 3], divided by 3). Why: real semantics are dense (SUN's annotator fractions,
    FLO's signed sentence embeddings); drawing them raw would give every image the same strong
    "average" appearance and hide the class differences under it.
    """
    sem = np.asarray(sem, dtype=np.float64)
    mu, sd = sem.mean(axis=1, keepdims=True), sem.std(axis=1, keepdims=True)
    z = (sem - mu) / np.where(sd > 0, sd, 1.0)
    return (np.clip(z, 0.0, 3.0) / 3.0).T.astype(np.float32)


def unit_columns(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=0, keepdims=True)
    return m / np.where(n > 0, n, 1.0)


def generated_word_vectors(rng: np.random.Generator, att_group: np.ndarray) -> np.ndarray:
    """Word vectors that resemble each other within a group: group vector + attribute noise."""
    groups = int(att_group.max()) + 1
    base = rng.standard_normal((groups, W2V_DIM))
    return base[att_group] + 0.6 * rng.standard_normal((len(att_group), W2V_DIM))


def generated_split(rng: np.random.Generator, k: int, seen: int, val: int) -> tuple[np.ndarray, ...]:
    perm = rng.permutation(k)
    seen_c, unseen_c = np.sort(perm[:seen]), np.sort(perm[seen:])
    vperm = rng.permutation(seen_c)
    return seen_c, unseen_c, np.sort(vperm[val:]), np.sort(vperm[:val])


def load_mat(path: Path) -> dict[str, Any]:
    import scipy.io

    try:
        return scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DataError(f"{path}: not a readable MATLAB file ({exc})") from None


def real_groups(spec: DatasetSpec, ddir: Path, a: int) -> tuple[np.ndarray, list[str]]:
    """Attribute groups from part names (CUB: "has_bill_shape::dagger"), else contiguous blocks."""
    names_file = ddir / (spec.attribute_names or "")
    if spec.part_groups and spec.attribute_names and names_file.is_file():
        prefixes = [ln.split()[1].split("::")[0] for ln in names_file.read_text().splitlines() if ln.strip()]
        if len(prefixes) == a:
            order = list(dict.fromkeys(prefixes))
            return np.array([order.index(p) for p in prefixes], dtype=np.int64), order
        log.warning("%s: %d names for %d attributes; using contiguous groups", names_file, len(prefixes), a)
    g = spec.sim_groups
    att_group = np.concatenate([np.full(len(b), i) for i, b in enumerate(np.array_split(np.arange(a), g))])
    return att_group.astype(np.int64), [f"group_{i}" for i in range(g)]


def real_structure(spec: DatasetSpec, ddir: Path, rng: np.random.Generator) -> Structure:
    path = ddir / "att_splits.mat"
    mat = load_mat(path)
    if "att" not in mat:
        raise DataError(f"{path}: no 'att' field; an xlsa17 att_splits.mat has att, *_loc fields")
    att = np.asarray(mat["att"], dtype=np.float64)
    if att.ndim != 2 or not np.isfinite(att).all():
        raise DataError(f"{path}: 'att' must be a finite A×C matrix, got shape {att.shape}")
    a, k = att.shape
    original = np.asarray(mat["original_att"], dtype=np.float64) if "original_att" in mat else None
    sem = np.clip(original, 0, None) if original is not None else att  # AWA2 marks missing as -1
    att_group, group_names = real_groups(spec, ddir, a)
    names = None
    if "allclasses_names" in mat:
        names = [str(np.asarray(x).ravel()[0]) for x in np.asarray(mat["allclasses_names"]).ravel()]

    w2v, real_w2v = None, False
    w2v_file = ddir / "w2v" / f"{spec.dirname}_attribute.npy"
    if spec.has_word_vectors and w2v_file.is_file():
        w2v = np.load(w2v_file, allow_pickle=False).astype(np.float64)
        if w2v.shape[0] != a:
            raise DataError(f"{w2v_file}: {w2v.shape[0]} rows, expected one per attribute ({a})")
        real_w2v = True
    latent = w2v if w2v is not None else generated_word_vectors(rng, att_group)
    if spec.has_word_vectors and w2v is None:
        w2v = latent  # keep the file layout of the dataset; sim.json says they are generated

    index_file = ddir / "image_index.npz"
    real_counts = None
    if index_file.is_file():
        idx = np.load(index_file, allow_pickle=False)
        labels = np.asarray(idx["labels"], dtype=np.int64)
        locs = {key: np.asarray(mat[key], dtype=np.int64).ravel() - 1
                for key in ("trainval_loc", "test_seen_loc", "test_unseen_loc", "train_loc", "val_loc")}
        if labels.max() >= k or min(v.max() for v in locs.values()) < 0 or \
                max(v.max() for v in locs.values()) >= len(labels):
            raise DataError(f"{index_file}: labels/indices inconsistent with {path}")
        seen_c = np.unique(labels[locs["trainval_loc"]])
        unseen_c = np.unique(labels[locs["test_unseen_loc"]])
        train_c = np.unique(labels[locs["train_loc"]])
        val_c = np.unique(labels[locs["val_loc"]])
        real_counts = {key: np.bincount(labels[locs[f"{key}_loc"]], minlength=k)
                       for key in ("trainval", "test_seen", "test_unseen")}
        real_split = True
    else:
        # FLO: the published file has no per-image labels, so its class split cannot be read.
        v = min(spec.unseen, spec.seen // 3)
        seen_c, unseen_c, train_c, val_c = generated_split(rng, k, spec.seen, v)
        real_split = False
    return Structure(
        att=att, original_att=original, strengths=class_strengths(sem), att_group=att_group,
        group_names=group_names, latent_w2v=latent, w2v=w2v, class_names=names,
        seen=seen_c, unseen=unseen_c, train_classes=train_c, val_classes=val_c,
        real_semantics=True, real_word_vectors=real_w2v, real_split=real_split, real_counts=real_counts)


# --------------------------------------------------------------------------- images and splits
def class_counts(spec: DatasetSpec, st: Structure, params: ScaleParams) -> dict[str, np.ndarray]:
    """Images per class and split: [K] arrays trainval / test_seen / test_unseen."""
    k = st.att.shape[1]
    seen_mask = np.zeros(k, dtype=bool)
    seen_mask[st.seen] = True
    if params.real_image_counts and st.real_counts is not None:
        return st.real_counts
    if params.real_image_counts:
        # Published totals spread evenly over the classes (no per-class counts available).
        per_seen = (spec.trainval + spec.test_seen) // max(len(st.seen), 1)
        n = np.where(seen_mask, per_seen, spec.test_unseen // max(len(st.unseen), 1))
        frac = spec.test_seen / (spec.trainval + spec.test_seen)
    else:
        per = int(np.clip(params.max_images // k, params.min_images_per_class, params.images_per_class))
        n = np.full(k, per)
        frac = params.test_seen_fraction
    n_ts = np.where(seen_mask, np.clip(np.round(n * frac), 1, n - 1), 0).astype(np.int64)
    return {"trainval": np.where(seen_mask, n - n_ts, 0).astype(np.int64),
            "test_seen": n_ts, "test_unseen": np.where(seen_mask, 0, n).astype(np.int64)}


def split_indices(img: Any, st: Structure) -> dict[str, np.ndarray]:
    """0-based row indices of the published split fields, with the validation quirk."""
    rows = np.arange(len(img.labels))
    out = {"trainval": rows[img.split == 0], "test_seen": rows[img.split == 1],
           "test_unseen": rows[img.split == 2]}
    seen_rows = img.split != 2
    # As published: train_loc / val_loc hold *all* images of their classes, test-seen included.
    out["train"] = rows[seen_rows & np.isin(img.labels, st.train_classes)]
    out["val"] = rows[seen_rows & np.isin(img.labels, st.val_classes)]
    return out


def write_mat(path: Path, st: Structure, splits: dict[str, np.ndarray], n: int) -> None:
    import scipy.io

    dtype = np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32
    mat: dict[str, Any] = {"att": st.att}
    if st.original_att is not None:
        mat["original_att"] = st.original_att
    if st.class_names is not None:
        mat["allclasses_names"] = np.array(st.class_names, dtype=object).reshape(-1, 1)
    for key in ("trainval", "test_seen", "test_unseen", "train", "val"):
        mat[f"{key}_loc"] = (splits[key] + 1).astype(dtype).reshape(-1, 1)
    scipy.io.savemat(path, mat, do_compression=True)


def sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def generation_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (``fcntl.flock``) on ``path``, held for the ``with`` block."""
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another process is generating this dataset; waiting for it", path)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def is_simulated(ddir: Path) -> bool:
    """True when ``ddir`` was written by this generator (any version): safe to replace."""
    try:
        return json.loads((ddir / META_NAME).read_text()).get("source") == "simulated"
    except (OSError, json.JSONDecodeError, AttributeError):
        # An incomplete generation never leaves ``ddir`` (it writes to a temporary name), so a
        # directory without a readable sim.json is someone else's.
        return False


def check_splits(splits: dict[str, np.ndarray], img: Any, st: Structure) -> None:
    """Internal invariants: partition, class-completeness, the validation quirk."""
    n = len(img.labels)
    final = np.concatenate([splits["trainval"], splits["test_seen"], splits["test_unseen"]])
    assert len(final) == n and len(np.unique(final)) == n, "final splits must partition the images"
    assert set(np.unique(img.labels[splits["test_unseen"]])) == set(st.unseen.tolist())
    assert set(np.unique(img.labels[splits["test_seen"]])) == set(st.seen.tolist())
    assert set(np.unique(img.labels[splits["trainval"]])) == set(st.seen.tolist())
    quirk = np.union1d(splits["train"], splits["val"])
    assert np.array_equal(quirk, np.union1d(splits["trainval"], splits["test_seen"]))


# --------------------------------------------------------------------------- appearance
def prototypes(st: Structure, params: Any, rng: np.random.Generator) -> np.ndarray:
    """[A, F] unit prototypes, partly a fixed random projection of the word vectors."""
    f = params.feature_dim
    proj = rng.standard_normal((st.latent_w2v.shape[1], f)) / np.sqrt(f)
    from_w2v = st.latent_w2v @ proj
    own = rng.standard_normal((st.latent_w2v.shape[0], f))

    def unit(m: np.ndarray) -> np.ndarray:
        nrm = np.linalg.norm(m, axis=1, keepdims=True)
        return m / np.where(nrm > 0, nrm, 1.0)  # SUN's all-zero word vector stays zero

    p = params.w2v_share * unit(from_w2v) + (1.0 - params.w2v_share) * unit(own)
    return unit(p).astype(np.float32)


def group_weights(st: Structure) -> np.ndarray:
    """[A, G] block weights: the group map, scaled so classes are equally separable everywhere.

    One scale per dataset: the median distance from a class's strength vector to its nearest
    other class becomes 1. Why: the published baselines find CUB, SUN and AWA2 about equally hard
    (54-62 %), while raw semantics differ in spread (SUN's 717 classes sit 2.5x closer than CUB's),
    so one set of noise parameters could not fit all of them otherwise.
    """
    s = st.strengths.astype(np.float64)  # [K, A]
    sq = (s ** 2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * s @ s.T, 0.0)
    np.fill_diagonal(d2, np.inf)
    nn = float(np.median(np.sqrt(d2.min(axis=1))))
    a, g = len(st.att_group), len(st.group_names)
    w = np.zeros((a, g), dtype=np.float32)
    w[np.arange(a), st.att_group] = 1.0 / nn if nn > 0 and np.isfinite(nn) else 1.0
    return w



# --------------------------------------------------------------------------- writing
def write_index_files(tmp: Path, spec: DatasetSpec, st: Structure, labels: np.ndarray,
                      splits: dict[str, np.ndarray]) -> None:
    """``att_splits.mat``, ``image_index.npz`` and the word vectors (when the dataset has them)."""
    n = len(labels)
    write_mat(tmp / "att_splits.mat", st, splits, n)
    files = np.array([f"sim/{spec.name}/{i:06d}.jpg" for i in range(n)])
    np.savez(tmp / "image_index.npz", labels=labels, image_files=files,
             trainval_loc=splits["trainval"], test_seen_loc=splits["test_seen"],
             test_unseen_loc=splits["test_unseen"], seenclasses=st.seen, unseenclasses=st.unseen)
    if st.w2v is not None:
        (tmp / "w2v").mkdir()
        np.save(tmp / "w2v" / f"{spec.dirname}_attribute.npy", st.w2v)


def store_provenance(meta: dict[str, Any]) -> dict[str, Any]:
    """The part of ``sim.json`` the feature store records."""
    return {k: meta[k] for k in ("source", "generator", "seed", "preset", "dataset", "parameters",
                                 "real_semantics")}


def base_meta(version: str, name: str, preset: str, seed: int, params: ScaleParams, st: Structure,
              n: int) -> dict[str, Any]:
    parameters = asdict(params)
    return {
        "source": "simulated", "generator": version, "dataset": name, "preset": preset,
        "seed": seed, "parameters": parameters, "params_hash": sha(parameters),
        "real_semantics": st.real_semantics, "real_word_vectors": st.real_word_vectors,
        "real_class_split": st.real_split, "images": n, "classes": int(st.att.shape[1]),
        "attributes": int(st.att.shape[0]), "groups": len(st.group_names),
        "seen": len(st.seen), "unseen": len(st.unseen),
    }


def chunk_starts(n: int, chunk: int, name: str, progress: bool) -> Iterator[tuple[int, int]]:
    """(chunk index, first row) over ``n`` rows, with a tqdm bar when ``progress``."""
    from tqdm import tqdm

    starts = range(0, n, chunk)
    yield from enumerate(tqdm(starts, desc=f"sim {name}", unit="chunk",
                              disable=(not progress) or None))  # None: off when not a terminal


# --------------------------------------------------------------------------- semantic statistics
DENSITY_LEVEL = 0.1  # an entry counts as "present" above this fraction of the matrix's 99th percentile


def semantic_stats(att: np.ndarray, original_att: np.ndarray | None = None,
                   unseen: np.ndarray | None = None) -> dict[str, float]:
    """Statistics of class semantics that generator v2 fits its generated ones to.

    Args:
        att: [A, K] the published class semantics (``att`` of ``att_splits.mat``; cosines do not
            depend on the column scale).
        original_att: [A, K] unnormalised semantics, used for the density when given (clipped at 0:
            AWA2 marks missing values -1); else ``att``.
        unseen: unseen class ids; None: every class (FLO's file has no per-image labels).

    Returns:
        ``nn_cos_q25`` / ``nn_cos_median`` / ``nn_cos_q75``: quartiles over classes of the cosine
        to the nearest other class; ``density``: the fraction of entries above ``DENSITY_LEVEL`` x
        the matrix's 99th percentile; ``unseen_mean_cos``: the mean cosine over unseen class pairs.
    """
    att = np.asarray(att, dtype=np.float64)
    u = att / np.maximum(np.linalg.norm(att, axis=0, keepdims=True), 1e-12)
    cos = u.T @ u  # [K, K]
    off = cos.copy()
    np.fill_diagonal(off, -np.inf)
    nn = off.max(axis=1)
    sem = np.clip(original_att, 0.0, None) if original_att is not None else att
    density = float(np.mean(sem > DENSITY_LEVEL * np.quantile(sem, 0.99)))
    cls = np.arange(cos.shape[0]) if unseen is None else np.asarray(unseen, dtype=np.int64)
    pairs = cos[np.ix_(cls, cls)][np.triu_indices(len(cls), 1)]
    return {"nn_cos_q25": float(np.quantile(nn, 0.25)), "nn_cos_median": float(np.median(nn)),
            "nn_cos_q75": float(np.quantile(nn, 0.75)), "density": density,
            "unseen_mean_cos": float(pairs.mean()) if len(pairs) else float("nan")}
