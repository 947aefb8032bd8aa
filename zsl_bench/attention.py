"""Scoring attention maps against the simulated ground truth (SIMULATION.md §7).

The simulator writes ``ground_truth.npz`` beside each simulated dataset: per image the centres of
the attribute groups' parts on the region grid, ``centres`` [N, G, 2] as (row, col) in grid cells,
their visibility ``visible`` [N, G], the attribute → group map ``att_group`` [A] and ``grid_side``.

An (image, attribute) pair *hits* when the attribute's attention map peaks within one grid cell
(Chebyshev distance ≤ 1) of the cell holding its part's centre; only pairs whose part is visible
count. Real data has no such ground truth, so nothing is scored there.

Each map's rate is reported as the metric ``attention_hit_rate_<map>`` (``metrics.hit_rate_name``);
the zoo's maps are registered in ``zsl_bench.metrics`` so that tables name them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .errors import DataError
from .metrics import hit_rate_name

log = logging.getLogger(__name__)

# Images scored per run by :func:`extras` (evenly spaced over the test sets): enough for a rate
# known to well under a percent, cheap next to training.
MAX_IMAGES = 2000
BATCH = 256


class PartTruth(NamedTuple):
    """Ground truth of the N images whose maps are scored."""

    centres: np.ndarray  # [N, G, 2] float, (row, col) in grid cells
    visible: np.ndarray  # [N, G] bool


@dataclass(frozen=True)
class GroundTruth:
    """The contents of one ``ground_truth.npz`` (all images of a simulated dataset)."""

    centres: np.ndarray  # [N, G, 2]
    visible: np.ndarray  # [N, G]
    attr_to_group: np.ndarray  # [A] int, group of each attribute (< 0: no part)
    side: int  # the region grid is side x side, R = side²

    def parts(self, idx: np.ndarray) -> PartTruth:
        return PartTruth(self.centres[idx], self.visible[idx])


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read a simulated ``ground_truth.npz``; a missing or malformed file raises :class:`DataError`."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"ground truth file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k in ("centres", "visible", "att_group", "grid_side")}
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: not a readable .npz file ({exc})") from None
    missing = sorted({"centres", "visible", "att_group", "grid_side"} - set(arrays))
    if missing:
        raise DataError(f"{p}: missing array(s) {', '.join(missing)}; expected centres [N, G, 2], "
                        f"visible [N, G], att_group [A], grid_side")
    centres, visible = arrays["centres"].astype(np.float64), arrays["visible"].astype(bool)
    groups, side = arrays["att_group"].astype(np.int64), int(arrays["grid_side"])
    if centres.ndim != 3 or centres.shape[2] != 2 or visible.shape != centres.shape[:2]:
        raise DataError(f"{p}: centres {centres.shape} and visible {visible.shape} must be [N, G, 2] and [N, G]")
    if groups.ndim != 1 or groups.max(initial=-1) >= centres.shape[1] or side < 1:
        raise DataError(f"{p}: att_group must be [A] with ids < G={centres.shape[1]} and grid_side >= 1")
    if not np.isfinite(centres).all():
        raise DataError(f"{p}: centres contain NaN or Inf")
    return GroundTruth(centres, visible, groups, side)


def hit_counts(maps: np.ndarray | torch.Tensor, parts: PartTruth, attr_to_group: np.ndarray,
               side: int) -> tuple[int, int]:
    """(hits, scored pairs) of maps [N, A, R] against ``parts``; see :func:`attention_hit_rate`."""
    m = maps.detach().float().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    groups = np.asarray(attr_to_group, dtype=np.int64)
    if m.ndim != 3 or m.shape[1] != groups.shape[0] or m.shape[2] != side * side:
        raise DataError(f"attention maps have shape {m.shape}; expected [N, A={groups.shape[0]}, R={side}x{side}]")
    if parts.centres.shape[0] != m.shape[0] or parts.visible.shape[0] != m.shape[0]:
        raise DataError(f"ground truth covers {parts.centres.shape[0]} images, maps {m.shape[0]}")
    if not np.isfinite(m).all():
        raise DataError("attention maps contain NaN or Inf")
    has_part = groups >= 0
    g = np.where(has_part, groups, 0)
    peak = m.argmax(axis=2)  # [N, A] region index, row-major on the grid
    peak_rc = np.stack(np.divmod(peak, side), axis=-1)  # [N, A, 2]
    cell = np.rint(parts.centres[:, g]).astype(np.int64)  # [N, A, 2] the centre's cell
    near = np.abs(peak_rc - cell).max(axis=-1) <= 1  # Chebyshev distance in cells
    counted = parts.visible[:, g] & has_part[None]
    return int((near & counted).sum()), int(counted.sum())


def attention_hit_rate(maps: np.ndarray | torch.Tensor, parts: PartTruth, attr_to_group: np.ndarray,
                       side: int) -> float:
    """Fraction of (image, attribute) pairs, over visible parts, whose map peaks near the part.

    Args:
        maps: attention maps [N, A, R] (any non-negative scores; only the argmax over R matters),
            R = side² regions in row-major order.
        parts: part centres [N, G, 2] (row, col in grid cells) and visibility [N, G] of those images.
        attr_to_group: [A] group (part) of each attribute; attributes with a negative id are skipped.
        side: grid side.

    Returns:
        The hit rate in [0, 1], NaN when no pair is visible.
    """
    hits, total = hit_counts(maps, parts, attr_to_group, side)
    return hits / total if total else float("nan")


def score_run(model: Any, data: Any, idx: np.ndarray) -> dict[str, float]:
    """``attention_hit_rate_<map>`` of a trained model's maps on rows ``idx`` of simulated ``data``.

    Returns ``{}`` on real data, without ground truth, or for models without attention maps.
    """
    if not getattr(data, "is_simulated", False) or getattr(data, "ground_truth", None) is None:
        return {}
    if not callable(getattr(model, "attention_maps", None)) or getattr(model, "input", "") != "regions":
        return {}
    idx = np.sort(np.asarray(idx, dtype=np.int64))
    if idx.size == 0:
        return {}
    gt = load_ground_truth(data.ground_truth)
    store = data.require_features("regions")
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    device = params[0].device if params else torch.device("cpu")
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    counts: dict[str, list[int]] = {}
    try:
        for start in range(0, idx.size, BATCH):
            rows = idx[start:start + BATCH]
            x = torch.from_numpy(np.asarray(store.read_regions(rows), dtype=np.float32)).to(device)
            with torch.no_grad():
                maps = model.attention_maps(x)
            for name, m in maps.items():
                hits, total = hit_counts(m, gt.parts(rows), gt.attr_to_group, gt.side)
                c = counts.setdefault(name, [0, 0])
                c[0] += hits
                c[1] += total
    finally:
        if was_training:
            model.train()
    return {hit_rate_name(name): (h / t if t else float("nan")) for name, (h, t) in counts.items()}


def extras(model: Any, data: Any) -> dict[str, float]:
    """The runner's hook: hit rates (in %, like every reported metric) on up to :data:`MAX_IMAGES`
    test images (seen and unseen)."""
    if not getattr(data, "is_simulated", False) or getattr(data, "ground_truth", None) is None:
        return {}
    idx = np.concatenate([data.splits["test_seen"], data.splits["test_unseen"]])
    if idx.size > MAX_IMAGES:
        idx = idx[np.linspace(0, idx.size - 1, MAX_IMAGES).astype(np.int64)]
    return {k: 100.0 * v for k, v in score_run(model, data, idx).items()}
