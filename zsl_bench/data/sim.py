"""The simulated benchmark: region features with localised attributes and a spurious context.

Spec: ``../shared/spec/SIMULATION.md``. ``generate(name, preset, seed)`` writes one dataset in the
real on-disk formats (``att_splits.mat``, ``image_index.npz``, ``w2v/<DIR>_attribute.npy``,
``features.h5``) plus ``ground_truth.npz`` and ``sim.json``, so simulated and real data share the
loader (``load_dataset(name, sim_preset=..., sim_seed=...)``). Everything it writes is labelled
"simulated" (``sim.json``, the store's provenance).

Model (SIMULATION.md points 1-7):

1. Semantics. ``small``/``full``: real when ``<data_root>/<DIR>/att_splits.mat`` exists (real att,
   word vectors, seen/unseen classes and train/val class membership from ``image_index.npz``);
   otherwise generated with the dataset's shape: each attribute group has a few "part variants"
   (sparse strength patterns) and a class picks one variant per group, so unseen classes are new
   combinations of parts seen in training; word vectors are a group vector plus attribute noise.
   FLO's published file has no per-image labels, so its class split is drawn with the seed even
   when its real semantics are used. ``tiny`` always generates (K=8: 5 seen / 3 unseen, A=12).
2. Appearance: prototype p_i = unit(w2v_share·unit(W v_i) + (1−w2v_share)·unit(ε_i)), W a fixed
   random 300→F projection, so word vectors predict part of each attribute's look.
3. Layout: group g has a fixed centre on the grid; per image it jitters (pose, std ``jitter``·side)
   and is hidden with probability ``occlusion``.
4. Instances: class look = class strengths + a fixed class-level N(0, ``class_gap``) "semantic
   gap" (published attributes describe a class imperfectly); image strengths = class look +
   N(0, ``strength_noise``), clipped at 0. Class strengths: how far each attribute is above its
   mean over classes (z-score clipped to [0, 3], / 3). FLO: its 1024 sentence-embedding dims are
   the "attributes", in 8 contiguous groups (no word vectors: prototypes come from generated
   latent vectors, no w2v file is written).
5. Features: region r of image b =
   c · Σ_g vis_bg · k(r; c_bg) · Σ_{i∈g} s_bi p_i  +  ``context_scale``·(1 − max_g vis·k)·ctx_b
   + ``image_noise``·ξ_b + ``region_noise``·ξ_br, then ReLU; k is a Gaussian of width
   ``kernel_width``·side; c makes the median nearest-class distance of the strengths 1 (so one
   set of noise levels means the same on every dataset); noises are per-element N(0, 1/F), i.e.
   relative to a unit-norm signal at any F.
6. Confounder: one context vector per seen class; a trainval image of seen class k shows k's
   context with probability ``rho``, otherwise a uniformly drawn one; test-seen and unseen images
   show uniformly drawn contexts of seen classes.
7. ``ground_truth.npz``: per image part centres (N, G, 2) (row, col in grid cells), visibility
   (N, G), context id (N,); the attribute→group map (A,), group names, grid side.

Calibration (SIMULATION.md, done once, baselines only; frozen in ``CALIBRATED`` below). The
harness's registered pooled-feature baselines through the real pipeline (``runner.run_one``, val
protocol, each method's dataset preset; ``benchmarks/calibrate_sim.py``), on ``small``, generator
seed 0, training seed 0, with the semantics ``zsl-bench run --sim`` uses by default (no real
metadata under the default data root: generated semantics). ZSL accuracy = mean per-class top-1
over unseen classes. Target: ESZSL/ALE ≈ 54 / 58 / 62 % on CUB / SUN / AWA2 (published real data).

CALIBRATION RECORD (frozen; generator zsl-bench-sim/1.2, 2 CPU cores, ~4 min):
``python benchmarks/calibrate_sim.py --datasets cub,sun,awa2 --methods ale,eszsl``
chosen: class_gap 0.12, strength_noise 0.08, image_noise 0.1, region_noise 0.25, occlusion 0.1,
jitter 0.1, kernel_width 0.12, rho 0.8, context_scale 0.2, w2v_share 0.5.
ZSL acc (target 54 / 58 / 62; chance 2.0 / 1.4 / 10.0) on CUB / SUN / AWA2, val protocol, seed 0:
ALE 31.2 / 48.9 / 52.0; ESZSL (alpha, gamma, feature normalisation tuned on validation)
69.8 / 85.8 / 85.3; their mean 50.5 / 67.4 / 68.7. The two published baselines bracket the
targets here (ALE below, ESZSL above); no single setting put both near them: the 1.1 setting
(strength 0.04, image 0.05, region 0.15) gave ALE 51.2 / 53.3 / 57.3 but ESZSL 88 / 89 / 96, and
a harder one (strength 0.12, image 0.15, region 0.3, occlusion 0.2) ESZSL 30.7 / 68.1 / 59.3 with
ALE 21.0 / 28.1 / 31.7. Chosen: the middle setting, whose baseline mean is closest to the targets.
FLO was not calibrated (no target). Attention methods were never run for calibration.
Why 1.0 was miscalibrated: its record (pooled numpy ESZSL 66.9 / 50.8 / 80.0) used *real*
semantics (``--data-root ../shared/data/zsl``), while ``--sim`` without a data root generates
semantics, which are far easier (1.0 params: ALE CUB 90.3, AWA2 90.3 and SAE 100 / 99.7 generated
vs ALE 27.2 / 49.7, SAE 89.2 / 78.3 with real semantics). With real semantics (``--data-root``)
the 1.1 parameters give lower accuracies than the record above.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from . import root as data_roots
from .datasets import DatasetSpec, get_spec
from .store import STORE_NAME, StoreWriter

log = logging.getLogger(__name__)

GENERATOR_VERSION = "zsl-bench-sim/1.2"
PRESETS = ("tiny", "small", "full")
GROUND_TRUTH_NAME = "ground_truth.npz"
META_NAME = "sim.json"
W2V_DIM = 300


@dataclass(frozen=True)
class SimParams:
    """Every parameter of one generation; recorded in ``sim.json`` and the store's provenance.

    Scale fields differ per preset; model fields are the calibrated defaults (``CALIBRATED``).
    """

    # scale
    feature_dim: int = 256  # F
    grid_side: int = 7  # R = side²
    images_per_class: int = 40  # upper bound per class (small / tiny)
    max_images: int = 4000  # total budget: per class = clip(max_images // K, min, images_per_class)
    min_images_per_class: int = 5
    real_image_counts: bool = False  # full: the published per-class counts
    real_semantics: bool = True  # False: always generate (tiny)
    chunk_size: int = 256  # images rendered and written per step (bounds memory)
    test_seen_fraction: float = 0.2  # of each seen class's images (generated counts)
    # model (calibrated once, then frozen)
    w2v_share: float = 0.5
    strength_noise: float = 0.08
    class_gap: float = 0.12
    image_noise: float = 0.1
    region_noise: float = 0.25
    occlusion: float = 0.1
    jitter: float = 0.1
    kernel_width: float = 0.12
    rho: float = 0.8
    context_scale: float = 0.2
    variants_per_group: int = 4  # generated semantics: part variants per attribute group

    def __post_init__(self) -> None:
        for name in ("feature_dim", "grid_side", "images_per_class", "max_images",
                     "min_images_per_class", "chunk_size", "variants_per_group"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sim parameter '{name}' must be >= 1, got {getattr(self, name)}")
        if self.min_images_per_class < 2:
            raise ConfigError("sim parameter 'min_images_per_class' must be >= 2 "
                              "(a seen class needs a trainval and a test-seen image)")
        for name in ("w2v_share", "occlusion", "rho", "test_seen_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"sim parameter '{name}' must be in [0, 1], got {v}")
        for name in ("strength_noise", "class_gap", "image_noise", "region_noise", "jitter", "context_scale"):
            if getattr(self, name) < 0:
                raise ConfigError(f"sim parameter '{name}' must be >= 0, got {getattr(self, name)}")
        if self.kernel_width <= 0:
            raise ConfigError(f"sim parameter 'kernel_width' must be > 0, got {self.kernel_width}")


CALIBRATED = SimParams()  # model defaults; see CALIBRATION RECORD in the module docstring

PRESET_SCALE: dict[str, dict[str, Any]] = {
    # tiny is for unit tests that check a method learns at all: less noise than the calibrated
    # small/full benchmark, so a few epochs on 100 images carry a clear signal.
    "tiny": dict(feature_dim=32, grid_side=4, images_per_class=20, max_images=160,
                 min_images_per_class=20, real_semantics=False, chunk_size=64,
                 strength_noise=0.02, image_noise=0.02, region_noise=0.1, occlusion=0.05, jitter=0.08,
                 rho=0.5, context_scale=0.02),
    "small": dict(feature_dim=256, grid_side=7, images_per_class=40, max_images=4000,
                  min_images_per_class=5, chunk_size=256),
    "full": dict(feature_dim=2048, grid_side=14, real_image_counts=True, chunk_size=32),
}

# Per dataset (``DatasetSpec.sim_scale``), small sets the images per class by the runtime budget of
# the main command (``zsl-bench run msdnpp --datasets all --sim``, 3 seeds, val protocol, official
# epochs, under 10 minutes on 2 CPU cores). MSDN++ costs ~0.35 ms per image per epoch at A=312,
# F=256, R=49, about proportional to A, so FLO (A=1024) gets the fewest images per class; every seen
# class keeps >= 3 trainval and >= 1 test-seen image, every unseen class >= 5 test images.
# Generated semantics: ``DatasetSpec.sim_groups`` attribute groups as contiguous blocks.
# tiny: a few classes and attributes, the same for every dataset name (FLO: still no w2v).
TINY_SHAPE = dict(classes=8, seen=5, val=2, attributes=12, groups=3)


def preset_params(preset: str, name: str | None = None, **overrides: Any) -> SimParams:
    """The parameters of a preset (for dataset ``name`` when given), with optional overrides."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown sim preset '{preset}'; valid: {', '.join(PRESETS)}")
    known = set(SimParams.__dataclass_fields__)
    bad = sorted(set(overrides) - known)
    if bad:
        raise ConfigError(f"unknown sim parameter(s) {bad}; valid: {sorted(known)}")
    per_dataset = get_spec(name).sim_scale.get(preset, {}) if name else {}
    return replace(CALIBRATED, **{**PRESET_SCALE[preset], **per_dataset, **overrides})


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


def _strengths(sem: np.ndarray) -> np.ndarray:
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


def _unit_columns(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=0, keepdims=True)
    return m / np.where(n > 0, n, 1.0)


def _generated_word_vectors(rng: np.random.Generator, att_group: np.ndarray) -> np.ndarray:
    """Word vectors that resemble each other within a group: group vector + attribute noise."""
    groups = int(att_group.max()) + 1
    base = rng.standard_normal((groups, W2V_DIM))
    return base[att_group] + 0.6 * rng.standard_normal((len(att_group), W2V_DIM))


def _generated_split(rng: np.random.Generator, k: int, seen: int, val: int) -> tuple[np.ndarray, ...]:
    perm = rng.permutation(k)
    seen_c, unseen_c = np.sort(perm[:seen]), np.sort(perm[seen:])
    vperm = rng.permutation(seen_c)
    return seen_c, unseen_c, np.sort(vperm[val:]), np.sort(vperm[:val])


def _generate_structure(spec: DatasetSpec, rng: np.random.Generator, params: SimParams,
                        tiny: bool) -> Structure:
    if tiny:
        k, s, v = TINY_SHAPE["classes"], TINY_SHAPE["seen"], TINY_SHAPE["val"]
        a, g = TINY_SHAPE["attributes"], TINY_SHAPE["groups"]
    else:
        k, s, a, g = spec.classes, spec.seen, spec.semantic_dim, spec.sim_groups
        v = min(spec.unseen, spec.seen // 3)
    att_group = np.concatenate([np.full(len(b), i) for i, b in enumerate(np.array_split(np.arange(a), g))])
    strengths = np.zeros((k, a), dtype=np.float64)
    for gi in range(g):
        idx = np.flatnonzero(att_group == gi)
        # Sparse part variants: a few active attributes per variant, a faint rest.
        variants = rng.uniform(0.0, 0.1, size=(params.variants_per_group, len(idx)))
        for vi in range(params.variants_per_group):
            on = rng.random(len(idx)) < max(1.0 / len(idx), 0.3)
            on[rng.integers(len(idx))] = True
            variants[vi, on] = rng.uniform(0.5, 1.0, size=int(on.sum()))
        strengths[:, idx] = variants[rng.integers(params.variants_per_group, size=k)]
    original = (100.0 * strengths).T  # [A, K], CUB-like percentages
    latent = _generated_word_vectors(rng, att_group)
    seen_c, unseen_c, train_c, val_c = _generated_split(rng, k, s, v)
    # The files keep the dataset's published layout (FLO: no original_att, names or word vectors).
    return Structure(
        att=_unit_columns(original), original_att=original if spec.has_original_att else None,
        strengths=_strengths(original), att_group=att_group.astype(np.int64),
        group_names=[f"group_{i}" for i in range(g)], latent_w2v=latent,
        w2v=latent if spec.has_word_vectors else None,
        class_names=[f"sim_class_{i:03d}" for i in range(k)] if spec.has_class_names else None,
        seen=seen_c, unseen=unseen_c, train_classes=train_c, val_classes=val_c,
        real_semantics=False, real_word_vectors=False, real_split=False)


def _load_mat(path: Path) -> dict[str, Any]:
    import scipy.io

    try:
        return scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DataError(f"{path}: not a readable MATLAB file ({exc})") from None


def _real_groups(spec: DatasetSpec, ddir: Path, a: int) -> tuple[np.ndarray, list[str]]:
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


def _real_structure(spec: DatasetSpec, ddir: Path, rng: np.random.Generator) -> Structure:
    path = ddir / "att_splits.mat"
    mat = _load_mat(path)
    if "att" not in mat:
        raise DataError(f"{path}: no 'att' field; an xlsa17 att_splits.mat has att, *_loc fields")
    att = np.asarray(mat["att"], dtype=np.float64)
    if att.ndim != 2 or not np.isfinite(att).all():
        raise DataError(f"{path}: 'att' must be a finite A×C matrix, got shape {att.shape}")
    a, k = att.shape
    original = np.asarray(mat["original_att"], dtype=np.float64) if "original_att" in mat else None
    sem = np.clip(original, 0, None) if original is not None else att  # AWA2 marks missing as -1
    att_group, group_names = _real_groups(spec, ddir, a)
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
    latent = w2v if w2v is not None else _generated_word_vectors(rng, att_group)
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
        seen_c, unseen_c, train_c, val_c = _generated_split(rng, k, spec.seen, v)
        real_split = False
    return Structure(
        att=att, original_att=original, strengths=_strengths(sem), att_group=att_group,
        group_names=group_names, latent_w2v=latent, w2v=w2v, class_names=names,
        seen=seen_c, unseen=unseen_c, train_classes=train_c, val_classes=val_c,
        real_semantics=True, real_word_vectors=real_w2v, real_split=real_split, real_counts=real_counts)


# --------------------------------------------------------------------------- images and splits
def _class_counts(spec: DatasetSpec, st: Structure, params: SimParams) -> dict[str, np.ndarray]:
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


@dataclass
class Images:
    labels: np.ndarray  # [N] int64, grouped by class
    split: np.ndarray  # [N] int8: 0 trainval, 1 test_seen, 2 test_unseen
    strengths: np.ndarray  # [N, A] float32
    centres: np.ndarray  # [N, G, 2] float32, (row, col) in grid cells
    visible: np.ndarray  # [N, G] bool
    context: np.ndarray  # [N] int64 index into the context pool (= position in `seen`)


def _draw_images(st: Structure, counts: dict[str, np.ndarray], params: SimParams,
                 rng: np.random.Generator) -> Images:
    """Per-image latent variables (small: N × (A + 3G)), drawn once in row order."""
    k = st.att.shape[1]
    labels_l, split_l = [], []
    for c in range(k):
        tags = np.repeat(np.array([0, 1, 2], dtype=np.int8),
                         [counts["trainval"][c], counts["test_seen"][c], counts["test_unseen"][c]])
        labels_l.append(np.full(len(tags), c, dtype=np.int64))
        split_l.append(rng.permutation(tags))  # which of a class's rows are test is random
    labels, split = np.concatenate(labels_l), np.concatenate(split_l)
    n, g = len(labels), len(st.group_names)
    side = params.grid_side
    # Fixed part centres per group (away from the border), then per-image pose jitter.
    base = rng.uniform(0.15, 0.85, size=(g, 2)) * (side - 1)
    centres = base[None] + rng.normal(0.0, params.jitter * side, size=(n, g, 2))
    centres = np.clip(centres, 0, side - 1).astype(np.float32)
    visible = rng.random((n, g)) >= params.occlusion
    # Semantic gap: a class's look departs from its published attributes (class-level, fixed),
    # then each image departs from its class (instance-level).
    gap = rng.normal(0.0, params.class_gap, size=st.strengths.shape).astype(np.float32)
    noise = rng.normal(0.0, params.strength_noise, size=(n, st.strengths.shape[1])).astype(np.float32)
    strengths = np.clip((st.strengths + gap)[labels] + noise, 0.0, None)
    # Confounder: a trainval image of a seen class shows "its" context with probability rho.
    pool = len(st.seen)
    own = np.full(k, -1, dtype=np.int64)
    own[st.seen] = np.arange(pool)
    context = rng.integers(pool, size=n)
    keep = (split == 0) & (rng.random(n) < params.rho)
    context[keep] = own[labels[keep]]
    return Images(labels, split, strengths, centres, visible, context.astype(np.int64))


def _prototypes(st: Structure, params: SimParams, rng: np.random.Generator) -> np.ndarray:
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


def _group_weights(st: Structure) -> np.ndarray:
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


def _render(img: Images, rows: slice, protos: np.ndarray, gw: np.ndarray, contexts: np.ndarray,
            params: SimParams, rng: np.random.Generator) -> np.ndarray:
    """Region features of ``rows`` -> float32 [B, F, R] (SIMULATION.md point 5)."""
    side, f = params.grid_side, params.feature_dim
    s = img.strengths[rows]  # [B, A]
    b = s.shape[0]
    # Group appearance Σ_{i∈g} s_i p_i / n_g: one GEMM per group (each attribute is in one group).
    scaled = protos * gw.sum(axis=1, keepdims=True)  # [A, F]
    gvec = np.empty((b, gw.shape[1], f), dtype=np.float32)  # [B, G, F]
    for gi in range(gw.shape[1]):
        idx = gw[:, gi] != 0
        gvec[:, gi] = s[:, idx] @ scaled[idx]
    yy, xx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    grid = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float32)  # [R, 2]
    d2 = ((img.centres[rows][:, :, None, :] - grid[None, None]) ** 2).sum(-1)  # [B, G, R]
    width = params.kernel_width * side
    kern = np.exp(-d2 / (2 * width * width)) * img.visible[rows][:, :, None]  # [B, G, R]
    feats = np.matmul(gvec.transpose(0, 2, 1), kern.astype(np.float32))  # [B, F, R]
    background = 1.0 - kern.max(axis=1)  # [B, R]
    feats += params.context_scale * contexts[img.context[rows]][:, :, None] * background[:, None, :]
    scale = 1.0 / np.sqrt(f)
    feats += params.image_noise * scale * rng.standard_normal((b, f, 1), dtype=np.float32)
    feats += params.region_noise * scale * rng.standard_normal((b, f, side * side), dtype=np.float32)
    return np.maximum(feats, 0.0, out=feats).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- writing
def _split_indices(img: Images, st: Structure) -> dict[str, np.ndarray]:
    """0-based row indices of the published split fields, with the validation quirk."""
    rows = np.arange(len(img.labels))
    out = {"trainval": rows[img.split == 0], "test_seen": rows[img.split == 1],
           "test_unseen": rows[img.split == 2]}
    seen_rows = img.split != 2
    # As published: train_loc / val_loc hold *all* images of their classes, test-seen included.
    out["train"] = rows[seen_rows & np.isin(img.labels, st.train_classes)]
    out["val"] = rows[seen_rows & np.isin(img.labels, st.val_classes)]
    return out


def _write_mat(path: Path, st: Structure, splits: dict[str, np.ndarray], n: int) -> None:
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


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _meta(name: str, preset: str, seed: int, params: SimParams, st: Structure, n: int) -> dict[str, Any]:
    return {
        "source": "simulated", "generator": GENERATOR_VERSION, "dataset": name, "preset": preset,
        "seed": seed, "parameters": asdict(params), "params_hash": _sha(asdict(params)),
        "real_semantics": st.real_semantics, "real_word_vectors": st.real_word_vectors,
        "real_class_split": st.real_split, "images": n, "classes": int(st.att.shape[1]),
        "attributes": int(st.att.shape[0]), "groups": len(st.group_names),
        "seen": len(st.seen), "unseen": len(st.unseen),
    }


def is_cached(ddir: Path, preset: str, seed: int, params: SimParams) -> bool:
    """True when ``ddir`` holds a complete dataset made by this generator with these parameters."""
    meta_file = ddir / META_NAME
    if not (meta_file.is_file() and (ddir / STORE_NAME).is_file()):
        return False
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (meta.get("generator") == GENERATOR_VERSION and meta.get("preset") == preset
            and meta.get("seed") == seed and meta.get("params_hash") == _sha(asdict(params)))


def generate(name: str, preset: str, seed: int = 0, data_root: str | os.PathLike[str] | None = None,
             out_root: str | os.PathLike[str] | None = None, *, force: bool = False,
             progress: bool = False, **overrides: Any) -> Path:
    """Write one simulated dataset and return its directory (``<out_root>/<DIR>``).

    Args:
        name: a registered dataset (cub, sun, awa2, flo).
        preset: tiny, small or full.
        seed: the generator's seed; output is a pure function of (name, preset, seed, parameters,
            real files used).
        data_root: where real semantics are looked up (``small``/``full``); default as
            ``zsl_bench.data.root.data_root``.
        out_root: parent of the dataset directory; default ``sim_root(preset, seed)``.
        force: regenerate even when a matching dataset exists.
        progress: show a tqdm bar over feature chunks.
        **overrides: ``SimParams`` fields (tests, calibration); recorded in ``sim.json``.

    Raises:
        ConfigError: unknown dataset, preset or parameter.
        DataError: unreadable real files; a dataset with other parameters already at the target.
    """
    spec = get_spec(name)
    params = preset_params(preset, spec.name, **overrides)
    if seed < 0:
        raise ConfigError(f"sim seed must be >= 0, got {seed}")
    out = Path(out_root).expanduser() if out_root is not None else data_roots.sim_root(preset, seed)
    ddir = out / spec.dirname
    out.mkdir(parents=True, exist_ok=True)
    # Check-and-generate under an exclusive lock beside the dataset directory: a second process
    # (two `zsl-bench run`, `ablate --workers 2`) waits, then finds the finished copy cached
    # instead of generating it again and replacing the directory under the first one's reader.
    with _generation_lock(out / f".{spec.dirname}.lock"):
        if not force and is_cached(ddir, preset, seed, params):
            log.info("%s: cached simulated dataset (%s, seed %d)", ddir, preset, seed)
            return ddir
        if ddir.exists() and not force and not _is_simulated(ddir):
            raise DataError(f"{ddir} exists but is not a simulated dataset (no {META_NAME} saying "
                            f"'simulated'); pass --force (force=True) to replace it")
        if ddir.exists() and not force:
            # A cache written by another generator version or parameters: it is a pure function
            # of its inputs, so it is replaced rather than reused.
            log.warning("%s: simulated dataset from another generator version or parameters (or "
                        "incomplete); regenerating it", ddir)
        _generate_into(spec, preset, seed, params, data_root, out, ddir, progress)
    return ddir


@contextlib.contextmanager
def _generation_lock(path: Path) -> Iterator[None]:
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


def _is_simulated(ddir: Path) -> bool:
    """True when ``ddir`` was written by this generator (any version): safe to replace."""
    try:
        return json.loads((ddir / META_NAME).read_text()).get("source") == "simulated"
    except (OSError, json.JSONDecodeError, AttributeError):
        # An incomplete generation never leaves ``ddir`` (it writes to a temporary name), so a
        # directory without a readable sim.json is someone else's.
        return False


def _generate_into(spec: DatasetSpec, preset: str, seed: int, params: SimParams,
                   data_root: str | os.PathLike[str] | None, out: Path, ddir: Path,
                   progress: bool) -> None:
    """Render the dataset into a temporary directory, then rename it to ``ddir``."""
    rng = np.random.default_rng([seed, spec.sim_stream, 0])
    real_dir = data_roots.data_root(data_root) / spec.dirname
    if params.real_semantics and (real_dir / "att_splits.mat").is_file():
        st = _real_structure(spec, real_dir, rng)
        log.info("%s: real semantics from %s", spec.name, real_dir)
    else:
        st = _generate_structure(spec, rng, params, tiny=not params.real_semantics)
    img = _draw_images(st, _class_counts(spec, st, params), params, rng)
    protos = _prototypes(st, params, rng)
    gw = _group_weights(st)
    contexts = rng.standard_normal((len(st.seen), params.feature_dim)).astype(np.float32)
    contexts /= np.linalg.norm(contexts, axis=1, keepdims=True)
    n = len(img.labels)
    splits = _split_indices(img, st)
    _check_splits(splits, img, st)
    meta = _meta(spec.name, preset, seed, params, st, n)

    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.dirname}.", suffix=".tmp", dir=out))
    try:
        _write_all(tmp, spec, st, img, splits, protos, gw, contexts, params, meta, seed, progress)
        if ddir.exists():
            trash = ddir.with_name(f".{ddir.name}.old-{os.getpid()}")
            os.replace(ddir, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, ddir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("%s: wrote simulated %s (%d images, %d classes, F=%d, R=%d)", ddir, preset, n,
             st.att.shape[1], params.feature_dim, params.grid_side ** 2)


def _write_all(tmp: Path, spec: DatasetSpec, st: Structure, img: Images, splits: dict[str, np.ndarray],
               protos: np.ndarray, gw: np.ndarray, contexts: np.ndarray, params: SimParams,
               meta: dict[str, Any], seed: int, progress: bool) -> None:
    n = len(img.labels)
    _write_mat(tmp / "att_splits.mat", st, splits, n)
    files = np.array([f"sim/{spec.name}/{i:06d}.jpg" for i in range(n)])
    np.savez(tmp / "image_index.npz", labels=img.labels, image_files=files,
             trainval_loc=splits["trainval"], test_seen_loc=splits["test_seen"],
             test_unseen_loc=splits["test_unseen"], seenclasses=st.seen, unseenclasses=st.unseen)
    if st.w2v is not None:
        (tmp / "w2v").mkdir()
        np.save(tmp / "w2v" / f"{spec.dirname}_attribute.npy", st.w2v)
    np.savez(tmp / GROUND_TRUTH_NAME, centres=img.centres, visible=img.visible,
             context=img.context, att_group=st.att_group, group_names=np.array(st.group_names),
             grid_side=np.int64(params.grid_side), labels=img.labels)

    from tqdm import tqdm

    chunk = params.chunk_size
    starts = range(0, n, chunk)
    provenance = {k: meta[k] for k in ("source", "generator", "seed", "preset", "dataset",
                                       "parameters", "real_semantics")}
    with StoreWriter(tmp / STORE_NAME, n, params.feature_dim, params.grid_side ** 2, provenance) as w:
        for ci, start in enumerate(tqdm(starts, desc=f"sim {spec.name}", unit="chunk",
                                        disable=(not progress) or None)):  # None: off when not a terminal
            rows = slice(start, min(start + chunk, n))
            # One stream per chunk: memory stays bounded, output does not depend on scheduling.
            crng = np.random.default_rng([seed, spec.sim_stream, 1, ci])
            w.write(start, _render(img, rows, protos, gw, contexts, params, crng))
    (tmp / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))


def _check_splits(splits: dict[str, np.ndarray], img: Images, st: Structure) -> None:
    """Internal invariants: partition, class-completeness, the validation quirk."""
    n = len(img.labels)
    final = np.concatenate([splits["trainval"], splits["test_seen"], splits["test_unseen"]])
    assert len(final) == n and len(np.unique(final)) == n, "final splits must partition the images"
    assert set(np.unique(img.labels[splits["test_unseen"]])) == set(st.unseen.tolist())
    assert set(np.unique(img.labels[splits["test_seen"]])) == set(st.seen.tolist())
    assert set(np.unique(img.labels[splits["trainval"]])) == set(st.seen.tolist())
    quirk = np.union1d(splits["train"], splits["val"])
    assert np.array_equal(quirk, np.union1d(splits["trainval"], splits["test_seen"]))
