"""Feature sets: which features of a dataset directory a method is fed, and the label rows record.

A dataset directory may hold several feature sets (``docs/ARCHITECTURE.md``, "Data layout"):

==============  ===========================================  ========================================
name            file                                         serves
==============  ===========================================  ========================================
``xlsa17``      ``res101.mat``                               pooled: the 2048-d ResNet-101 features of
                                                             the proposed-split release (224 px), which
                                                             the pooled methods' papers report on
``store``       ``features.h5`` (extracted, imported, sim)   regions at its image size, and pooled
                                                             (stored, or the regions' mean)
``store-<N>px`` ``features-<N>px.h5`` (``data extract        the same, at N px (e.g. 224 → 7×7 maps,
                --size N`` for N ≠ 448)                      DAZLE's)
``msdn``        ``feature_map_ResNet_101_<DIR>.hdf5``        regions 448 px (14×14), pooled = mean
==============  ===========================================  ========================================

:func:`choose` picks one per (method input kind, image size the method's paper used), in this order:

1. features the user imported from their own array (``data import FILE.npy``) that serve the kind:
   an explicit choice of features, used as before;
2. pooled: ``xlsa17`` (``res101.mat``);
3. sets at the paper's image size (regions: ``ZSLMethod.image_size``, default 448; pooled: 224),
   in the order ``store``, ``store-<N>px`` (by N), ``msdn``;
4. any other set serving the kind, in the same order (with one warning: not the paper's features).

:meth:`FeatureSet.label` is what a result row's ``features`` column says, e.g.
``xlsa17 res101.mat (224 px, pooled)``, ``regions 448 px R=196 mean-pooled (features.h5)``,
``simulated small (regions R=196)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from .store import FeatureSource

log = logging.getLogger(__name__)

XLSA17_SIZE = 224  # res101.mat: ResNet-101 on 224-px crops (Xian et al., the proposed-split release)
DEFAULT_REGION_SIZE = 448  # MSDN / TransZero: 448-px input, 14×14 maps
STORE_SIZED = re.compile(r"^features-(\d+)px\.h5$")


def store_name(size: int) -> str:
    """The file ``data extract --size size`` writes by default: ``features.h5`` at 448 px, else
    ``features-<size>px.h5`` (so that a 224-px store for DAZLE sits beside the 448-px one)."""
    return "features.h5" if size == DEFAULT_REGION_SIZE else f"features-{size}px.h5"


@dataclass
class FeatureSet:
    """One feature file of a dataset directory, opened on first use.

    Attributes:
        name: ``xlsa17``, ``store``, ``store-<N>px``, ``msdn``, ``memory``.
        path: the file.
        kinds: the input kinds it serves (``pooled``; ``regions`` too when it holds region maps).
        image_size: the CNN input side in pixels, None when unknown (imported arrays, simulated).
        regions: R of its region maps, None for pooled-only sets.
        origin: ``extracted``, ``imported-msdn``, ``imported-array``, ``simulated``, ``xlsa17``, ``memory``.
        sim_preset: the simulated preset, for simulated stores.
        stored_pooled: pooled features held apart from the regions (an imported (N, F) array).
    """

    name: str
    path: Path
    kinds: tuple[str, ...]
    image_size: int | None
    regions: int | None
    origin: str
    opener: Callable[[], FeatureSource] = field(repr=False)
    sim_preset: str | None = None
    _source: FeatureSource | None = field(default=None, repr=False)

    def open(self) -> FeatureSource:
        if self._source is None:
            self._source = self.opener()
        return self._source

    def label(self, kind: str) -> str:
        """What a row trained on this set's ``kind`` features records (column ``features``)."""
        if self.origin == "xlsa17":
            return f"xlsa17 {self.path.name} ({XLSA17_SIZE} px, pooled)"
        if self.origin == "memory":
            return f"in-memory arrays ({'regions' if kind == 'regions' else 'pooled'})"
        if self.regions is None:  # a pooled-only store (an imported (N, F) array)
            return f"pooled ({self.origin}, {self.path.name})"
        size = f"{self.image_size} px " if self.image_size else ""
        what = f"regions {size}R={self.regions}" + (" mean-pooled" if kind == "pooled" else "")
        if self.origin == "simulated":
            return f"simulated {self.sim_preset or '?'} ({what})"
        return f"{what} ({self.origin}, {self.path.name})"

    def is_paper(self, kind: str, image_size: int | None) -> bool:
        """Whether these are the features a method of input ``kind`` reports on in its paper."""
        if kind == "pooled":
            return self.origin == "xlsa17"
        return "regions" in self.kinds and self.origin != "simulated" \
            and self.image_size == (image_size or DEFAULT_REGION_SIZE)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()


def paper_features(kind: str, image_size: int | None) -> str:
    """The features a method of input ``kind`` and paper ``image_size`` was published on, in words."""
    if kind == "pooled":
        return f"xlsa17 res101.mat ({XLSA17_SIZE} px, pooled)"
    size = image_size or DEFAULT_REGION_SIZE
    side = size // 32
    return f"ResNet-101 region maps at {size} px ({side}×{side}, {store_name(size)} from " \
           f"'zsl-bench data extract DATASET --size {size}'" + \
           (" or the MSDN feature-map HDF5)" if size == DEFAULT_REGION_SIZE else ")")


def store_set(name: str, source: Any, *, sim_preset: str | None = None) -> FeatureSet:
    """A :class:`FeatureSet` over an opened HDF5 store (``features.h5``, ``features-<N>px.h5``, MSDN)."""
    prov = getattr(source, "provenance", {}) or {}
    regions = source.num_regions
    size = prov.get("image_size")
    if name == "msdn":
        origin = "imported-msdn"
        side = source.grid_side
        size = side * 32 if side else None
    elif prov.get("source") == "simulated":
        origin = "simulated"
        sim_preset = sim_preset or prov.get("preset")
        size = None
    elif "imported_from" in prov:
        origin = "imported-array" if str(prov.get("source_format", "")).startswith("numpy") else "imported-msdn"
    else:
        origin = "extracted"
    kinds = ("regions", "pooled") if regions else ("pooled",)
    return FeatureSet(name=name, path=Path(source.path), kinds=kinds, image_size=int(size) if size else None,
                      regions=regions, origin=origin, opener=lambda: source, sim_preset=sim_preset,
                      _source=source)


def choose(sets: Sequence[FeatureSet], kind: str, image_size: int | None = None, *,
           what: str = "", warn: bool = True) -> FeatureSet | None:
    """The set a method of input ``kind`` (paper image size ``image_size``) is fed; None: none serves it.

    The order is the module's. Real data that does not hold the paper's features logs one warning
    naming what is used instead and what the paper used.
    """
    serving = [s for s in sets if kind in s.kinds]
    if not serving:
        return None
    want = image_size or (XLSA17_SIZE if kind == "pooled" else DEFAULT_REGION_SIZE)
    ranked = sorted(serving, key=lambda s: (
        s.origin != "imported-array",  # 1. the user's own features
        s.origin != "xlsa17",  # 2. res101.mat (serves pooled only)
        s.image_size != want,  # 3. the paper's image size
        _ORDER.get(s.name.split("-")[0], 9), s.name != "store", s.image_size or 0))  # 4. store, store-<N>px, msdn
    best = ranked[0]
    note = (what, str(best.path), kind, image_size)
    if warn and best.origin not in ("simulated", "imported-array", "memory") \
            and not best.is_paper(kind, image_size) and note not in _WARNED:
        _WARNED.add(note)
        log.warning("%s: not the paper's features (%s) here; using %s", what or "features",
                    paper_features(kind, image_size), best.label(kind))
    return best


_ORDER = {"xlsa17": 0, "store": 1, "msdn": 2}
_WARNED: set[tuple[Any, ...]] = set()  # one warning per (method and dataset, file, kind, size) and process


def missing_message(dataset: str, where: str, kind: str, image_size: int | None, sets: Sequence[FeatureSet],
                    *, paper: bool = False) -> str:
    """One line: the features that are missing, what is there, and how to get them."""
    have = ", ".join(sorted({s.label(kind if kind in s.kinds else "pooled") for s in sets})) or "none"
    if paper:
        return (f"{dataset.upper()}: --preset paper needs the paper's features, {paper_features(kind, image_size)}, "
                f"under {where}; found: {have}")
    want = "region features (features.h5 with 'regions', or an MSDN feature-map HDF5)" \
        if kind == "regions" else "features (features.h5, res101.mat or an MSDN feature-map HDF5)"
    return (f"{dataset.upper()}: no {want} under {where}; prepare real data ('zsl-bench data download "
            f"{dataset}' then 'zsl-bench data extract {dataset}', or 'zsl-bench data import {dataset} FILE' with "
            "your own features) or use the simulated benchmark (--sim)")


def check_rows(source: FeatureSource, n: int, path: Path, n_from: str) -> FeatureSource:
    if source.num_rows != n:
        raise DataError(f"{path}: holds {source.num_rows} rows, expected {n} ({n_from})")
    return source
