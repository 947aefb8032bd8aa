"""Generator v1 (``zsl-bench-sim/1.2``) of the simulated benchmark, kept reproducible by name.

Selected with ``generate(..., generator="1.2")`` (``zsl_bench.data.sim``); its output is bit-identical to
what the 1.2 release wrote (``tests/test_sim_versions.py`` checks stored digests). The current default
is v2 (``zsl_bench.data.sim``). What follows is the v1 documentation as released.

The simulated benchmark: region features with localised attributes and a spurious context.

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

import json
import logging
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from . import root as data_roots
from .datasets import DatasetSpec, get_spec
from .sim_common import (
    GROUND_TRUTH_NAME,
    META_NAME,
    PRESETS,
    TINY_SHAPE,
    ScaleParams,
    Structure,
    base_meta,
    check_non_negative,
    check_splits,
    check_unit_interval,
    chunk_starts,
    class_counts,
    class_strengths,
    generated_split,
    generated_word_vectors,
    group_weights,
    prototypes,
    real_structure,
    split_indices,
    store_provenance,
    unit_columns,
    write_index_files,
)
from .store import STORE_NAME, StoreWriter

log = logging.getLogger(__name__)

GENERATOR_VERSION = "zsl-bench-sim/1.2"


@dataclass(frozen=True)
class SimParams(ScaleParams):
    """Every parameter of one v1 generation; recorded in ``sim.json`` and the store's provenance.

    Scale fields (``ScaleParams``) differ per preset; model fields are the calibrated defaults
    (``CALIBRATED``).
    """

    VERSION = GENERATOR_VERSION
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
        super().__post_init__()
        if self.variants_per_group < 1:
            raise ConfigError(f"sim parameter 'variants_per_group' must be >= 1, got {self.variants_per_group}")
        check_unit_interval(self, ("w2v_share", "occlusion", "rho"))
        check_non_negative(self, ("strength_noise", "class_gap", "image_noise", "region_noise", "jitter",
                                  "context_scale"))
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


def preset_params(preset: str, name: str | None = None, **overrides: Any) -> SimParams:
    """The parameters of a preset (for dataset ``name`` when given), with optional overrides."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown sim preset '{preset}'; valid: {', '.join(PRESETS)}")
    known = {f.name for f in fields(SimParams)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ConfigError(f"unknown sim parameter(s) {bad}; valid: {sorted(known)}")
    per_dataset = get_spec(name).sim_scale.get(preset, {}) if name else {}
    return replace(CALIBRATED, **{**PRESET_SCALE[preset], **per_dataset, **overrides})


# --------------------------------------------------------------------------- class structure
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
    latent = generated_word_vectors(rng, att_group)
    seen_c, unseen_c, train_c, val_c = generated_split(rng, k, s, v)
    # The files keep the dataset's published layout (FLO: no original_att, names or word vectors).
    return Structure(
        att=unit_columns(original), original_att=original if spec.has_original_att else None,
        strengths=class_strengths(original), att_group=att_group.astype(np.int64),
        group_names=[f"group_{i}" for i in range(g)], latent_w2v=latent,
        w2v=latent if spec.has_word_vectors else None,
        class_names=[f"sim_class_{i:03d}" for i in range(k)] if spec.has_class_names else None,
        seen=seen_c, unseen=unseen_c, train_classes=train_c, val_classes=val_c,
        real_semantics=False, real_word_vectors=False, real_split=False)


# --------------------------------------------------------------------------- images
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
# --------------------------------------------------------------------------- writing
def write_dataset(tmp: Path, spec: DatasetSpec, preset: str, seed: int, params: SimParams,
                  data_root: str | os.PathLike[str] | None, progress: bool) -> dict[str, Any]:
    """Render the whole dataset into the (empty) directory ``tmp``; return its ``sim.json``."""
    rng = np.random.default_rng([seed, spec.sim_stream, 0])
    real_dir = data_roots.data_root(data_root) / spec.dirname
    if params.real_semantics and (real_dir / "att_splits.mat").is_file():
        st = real_structure(spec, real_dir, rng)
        log.info("%s: real semantics from %s", spec.name, real_dir)
    else:
        st = _generate_structure(spec, rng, params, tiny=not params.real_semantics)
    img = _draw_images(st, class_counts(spec, st, params), params, rng)
    protos = prototypes(st, params, rng)
    gw = group_weights(st)
    contexts = rng.standard_normal((len(st.seen), params.feature_dim)).astype(np.float32)
    contexts /= np.linalg.norm(contexts, axis=1, keepdims=True)
    n = len(img.labels)
    splits = split_indices(img, st)
    check_splits(splits, img, st)
    meta = base_meta(GENERATOR_VERSION, spec.name, preset, seed, params, st, n)

    write_index_files(tmp, spec, st, img.labels, splits)
    np.savez(tmp / GROUND_TRUTH_NAME, centres=img.centres, visible=img.visible,
             context=img.context, att_group=st.att_group, group_names=np.array(st.group_names),
             grid_side=np.int64(params.grid_side), labels=img.labels)
    with StoreWriter(tmp / STORE_NAME, n, params.feature_dim, params.grid_side ** 2,
                     store_provenance(meta)) as w:
        for ci, start in chunk_starts(n, params.chunk_size, spec.name, progress):
            rows = slice(start, min(start + params.chunk_size, n))
            # One stream per chunk: memory stays bounded, output does not depend on scheduling.
            crng = np.random.default_rng([seed, spec.sim_stream, 1, ci])
            w.write(start, _render(img, rows, protos, gw, contexts, params, crng))
    (tmp / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return meta
