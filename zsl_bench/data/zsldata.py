"""``ZSLData``: everything the harness knows about one dataset, with provenance.

Unknown labels: when no file gives per-image labels (real FLO here: only ``att_splits.mat``), ``labels``
is still an int64 array of length N, filled with ``UNKNOWN_LABEL`` (-1), ``has_labels`` is False,
the class sets are empty and ``val_train`` / ``val_seen`` (which need labels to stratify) are empty.
Such a dataset can be summarised (``data info``) but not trained on: ``require_labels()`` and
``require_features()`` raise a one-line :class:`~zsl_bench.errors.DataError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .store import FeatureSource

UNKNOWN_LABEL = -1  # fills ``labels`` when no file gives per-image labels

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
    labels: np.ndarray  # [N] int64, 0-based class ids; all UNKNOWN_LABEL when unknown (see module doc)
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
    features: FeatureSource | None = None  # FeatureStore (HDF5) or MemoryStore (res101.mat)
    ground_truth: Path | None = None  # simulated only: part centres and visibility (npz)
    provenance: dict[str, Any] = field(default_factory=dict)
    # Every feature file of the directory (data.features.FeatureSet); ``features`` is the first of
    # store > MSDN > res101.mat (data info, verify); what a method is fed: :meth:`choose_features`.
    feature_sets: list[Any] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return int(self.att.shape[0])

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def is_simulated(self) -> bool:
        return self.source == "simulated"

    @property
    def has_labels(self) -> bool:
        return bool(self.labels.size) and bool((self.labels != UNKNOWN_LABEL).all())

    def require_labels(self) -> np.ndarray:
        """Per-image labels, or a one-line error saying which files would provide them."""
        from ..errors import DataError

        if not self.has_labels:
            where = self.provenance.get("dir", f"{self.provenance.get('root', 'the data root')}/{self.name.upper()}")
            raise DataError(
                f"{self.name.upper()}: per-image labels are unknown (no image_index.npz, res101.mat or MSDN "
                f"feature-map HDF5 under {where}); add one of them or use the simulated benchmark (--sim)"
            )
        return self.labels

    def choose_features(self, kind: str, image_size: int | None = None, *, paper: bool = False,
                        what: str = "") -> tuple[FeatureSource, str]:
        """The features a method of input ``kind`` is fed and their label (a row's ``features`` column).

        Chosen among ``feature_sets`` in :mod:`zsl_bench.data.features`' order (res101.mat for pooled
        methods, the paper's image size for region methods); ``paper``: only the paper's features
        will do (``--preset paper``). Raises a one-line :class:`DataError` when none serves ``kind``.
        """
        from ..errors import DataError
        from .features import choose, missing_message

        where = f"{self.provenance.get('root', 'the data root')}/{self.name.upper()}"
        if self.features is not None or self.feature_sets:
            self.require_labels()  # features without labels cannot be trained or evaluated on
        if not self.feature_sets:  # built in memory (Engine.from_arrays, tests): the one handle
            src = self.require_features(kind)
            if paper:
                raise DataError(missing_message(self.name, where, kind, image_size, [], paper=True))
            label = "simulated" if self.is_simulated else "in-memory arrays"
            return src, f"{label} ({'regions' if kind == 'regions' else 'pooled'})"
        chosen = choose(self.feature_sets, kind, image_size, what=what or self.name.upper(), warn=not paper)
        if chosen is None:
            raise DataError(missing_message(self.name, where, kind, image_size, self.feature_sets))
        if paper and not chosen.is_paper(kind, image_size):
            raise DataError(missing_message(self.name, where, kind, image_size, self.feature_sets, paper=True))
        return chosen.open(), chosen.label(kind)

    def env_resampled_features(self, chosen: FeatureSource) -> FeatureSource | None:
        """Simulated data with a reliance store: the features of every image re-rendered with its
        environment resampled (``sim.json``'s ``env_resampled_store``: same rows, same order, same
        format as ``features.h5``), when ``chosen`` (what a method is fed) is that ``features.h5``;
        else None (real data, generator v1, other features).

        Raises:
            DataError: ``sim.json`` names a store that is missing or does not match ``features.h5``.
        """
        from ..errors import DataError
        from .features import check_rows
        from .store import STORE_NAME, FeatureStore

        name = self.provenance.get("env_resampled_store") if self.is_simulated else None
        if not name or not self.provenance.get("dir"):
            return None
        ddir = Path(self.provenance["dir"])
        meta = ddir / "sim.json"
        if not isinstance(name, str) or Path(name).name != name:
            raise DataError(f"{meta}: env_resampled_store must be a file name in {ddir}, got {name!r}")
        main = getattr(chosen, "path", None)
        if main is None or Path(main).resolve() != (ddir / STORE_NAME).resolve():
            return None
        store = FeatureStore(ddir / name)
        try:
            check_rows(store, self.num_images, store.path, f"{self.num_images} images")
            if (store.feature_dim, store.num_regions) != (chosen.feature_dim, chosen.num_regions):
                raise DataError(f"{store.path}: features of shape F={store.feature_dim}, R={store.num_regions}, "
                                f"but {STORE_NAME} has F={chosen.feature_dim}, R={chosen.num_regions}; "
                                "regenerate the simulated dataset")
        except BaseException:
            store.close()
            raise
        return store

    def require_features(self, kind: str) -> FeatureSource:
        """The feature handle, or a one-line error naming the missing file and the two ways forward."""
        from ..errors import DataError

        if self.feature_sets:
            return self.choose_features(kind)[0]
        if self.features is not None:
            self.require_labels()  # features without labels cannot be trained or evaluated on
        if self.features is None or (kind == "regions" and not self.features.has_regions):
            where = self.provenance.get("root", "the data root")
            want = "region features (features.h5 with 'regions', or an MSDN feature-map HDF5)" \
                if kind == "regions" else "features (features.h5, res101.mat or an MSDN feature-map HDF5)"
            raise DataError(
                f"{self.name.upper()}: no {want} under {where}/{self.name.upper()}; prepare real data "
                f"('zsl-bench data download {self.name}' then 'zsl-bench data extract {self.name}', or "
                f"'zsl-bench data import {self.name} FILE' with your own features) or use the simulated "
                "benchmark (--sim)"
            )
        return self.features
