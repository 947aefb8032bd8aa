"""``ZSLData``: everything the harness knows about one dataset, with provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .store import FeatureStore

# Split names, all 0-based int64 row indices into ``labels`` / the feature store.
FINAL_SPLITS = ("trainval", "test_seen", "test_unseen")
# Honest validation (PROTOCOL.md): train = train_loc minus test_seen; val = val_loc minus
# test_seen. GZSL validation: val_train (fit on these), val_seen (the fixed seeded 20% of the
# train-class images), val_unseen (= val).
VAL_SPLITS = ("train", "val", "val_train", "val_seen", "val_unseen")


@dataclass
class ZSLData:
    name: str  # lowercase registry name: cub, sun, awa2, flo
    att: np.ndarray  # [K, A] float32, class semantics (published 'att', transposed to rows)
    labels: np.ndarray  # [N] int64, 0-based class ids
    seen_classes: np.ndarray  # [S] int64, sorted
    unseen_classes: np.ndarray  # [U] int64, sorted
    splits: dict[str, np.ndarray]  # FINAL_SPLITS + VAL_SPLITS
    val_seen_classes: np.ndarray  # classes of the validation 'train' (play seen in validation)
    val_unseen_classes: np.ndarray  # classes of the validation 'val' (play unseen)
    source: str = "real"  # real | simulated
    original_att: np.ndarray | None = None  # [K, A]
    w2v: np.ndarray | None = None  # [A, D]
    class_names: list[str] | None = None
    attribute_names: list[str] | None = None
    image_files: list[str] | None = None
    features: FeatureStore | None = None
    ground_truth: Path | None = None  # simulated only: part centres and visibility (npz)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.att.shape[0])

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def is_simulated(self) -> bool:
        return self.source == "simulated"

    def require_features(self, kind: str) -> FeatureStore:
        """The feature handle, or a one-line error naming the missing file and the two ways forward."""
        from ..errors import DataError

        if self.features is None or (kind == "regions" and not self.features.has_regions):
            where = self.provenance.get("root", "the data root")
            want = "region features (features.h5 with 'regions', or an MSDN feature-map HDF5)" \
                if kind == "regions" else "features (features.h5, res101.mat or an MSDN feature-map HDF5)"
            raise DataError(
                f"{self.name.upper()}: no {want} under {where}/{self.name.upper()}; prepare real data "
                f"(zsl-bench data download/extract/import {self.name}) or use the simulated benchmark (--sim)"
            )
        return self.features
