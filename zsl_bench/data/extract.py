"""Region features from images: torchvision ResNet-101 without its last two children (avgpool, fc).

The recipe of the MSDN release (``../shared/data/zsl/README.md``): resize the shorter side to
``size``, centre-crop ``size``×``size``, ImageNet mean/std, ResNet-101 up to ``layer4``; the
``(2048, size/32, size/32)`` map is stored as ``regions`` ``(N, 2048, R)`` float16 and its mean over
regions as ``pooled`` ``(N, 2048)`` float32, in the rows of the dataset's image list.

Image list → local files: the published lists (``image_files`` of ``res101.mat`` /
``image_index.npz``) hold paths from the authors' machines, e.g.
``/BS/xian/work/data/CUB_200_2011/images/001.Black_footed_Albatross/x.jpg``. Everything up to and
including the dataset's marker folder is dropped and the rest is resolved under
``<root>/<DIR>/images/`` (the marker is ``DatasetSpec.image_marker``):

=====  ========================  ==================================================================
CUB    ``CUB_200_2011/images/``  ``…/CUB_200_2011/images/001.X/y.jpg`` → ``CUB/images/001.X/y.jpg``
SUN    ``images/``               ``…/SUN/images/a/abbey/y.jpg`` → ``SUN/images/a/abbey/y.jpg``
AWA2   ``JPEGImages/``           ``…/Animals_with_Attributes2//JPEGImages/ant/y.jpg`` → ``AWA2/images/ant/y.jpg``
FLO    ``jpg/``                  ``…/Flowers/jpg/image_00001.jpg`` → ``FLO/images/image_00001.jpg``
=====  ========================  ==================================================================

This is the layout ``zsl-bench data download`` produces. Extraction is resumable: rows are written
batch by batch into ``features.h5.tmp`` (``rows_done`` tracks progress); a rerun continues there.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import ConfigError, DataError
from .datasets import get_spec
from .features import store_name
from .store import StoreWriter

log = logging.getLogger(__name__)

FEATURE_DIM = 2048
STRIDE = 32  # ResNet-101's total downsampling: a 448-px input gives a 14×14 map
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_WEIGHTS_LABEL = "random (TEST ONLY)"

# ------------------------------------------------------------------ image list
def local_image_path(published: str, dataset: str, images_dir: Path) -> Path:
    """Map one published image path to ``images_dir/<dataset-relative part>``."""
    marker_path = get_spec(dataset).image_marker  # the folder after which paths are dataset-relative
    marker = marker_path.split("/")
    parts = [p for p in str(published).replace("\\", "/").split("/") if p not in ("", ".")]
    for i in range(len(parts) - len(marker) + 1):
        if parts[i:i + len(marker)] == marker:
            rest = parts[i + len(marker):]
            break
    else:
        raise DataError(f"image path {published!r} has no '{marker_path}/' folder; "
                        f"cannot map it under {images_dir}")
    if not rest or ".." in rest:
        raise DataError(f"image path {published!r} does not name a file below '{marker_path}/'")
    return images_dir.joinpath(*rest)


def read_image_list(dataset: str, root: Path) -> list[str]:
    """The published ``image_files`` of a dataset, in feature-row order.

    Read from ``<root>/<DIR>/image_index.npz`` when present, else from ``res101.mat``.
    """
    spec = get_spec(dataset)
    ddir = Path(root) / spec.dirname
    npz = ddir / "image_index.npz"
    mat = ddir / "res101.mat"
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as z:
                files = [str(f) for f in z["image_files"]]
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{npz}: cannot read 'image_files' ({exc})") from None
    elif mat.is_file():
        import scipy.io

        try:
            raw = scipy.io.loadmat(mat, variable_names=["image_files"])["image_files"]
        except (OSError, KeyError, ValueError, NotImplementedError) as exc:
            raise DataError(f"{mat}: cannot read 'image_files' ({exc})") from None
        # A MATLAB cell column: each cell is a 1-element array holding the path string.
        files = [str(np.asarray(c).ravel()[0]) for c in np.asarray(raw, dtype=object).ravel()]
    else:
        raise DataError(f"no image list for {spec.dirname}: need {npz} or {mat} "
                        f"(run `zsl-bench data download {dataset}`)")
    if len(files) != spec.images:
        log.warning("%s: image list has %d entries, the published count is %d", ddir, len(files), spec.images)
    return files


# ------------------------------------------------------------------ model
def build_backbone(weights: str = "imagenet") -> Any:
    """ResNet-101 without avgpool and fc, in eval mode.

    Args:
        weights: ``"imagenet"`` (torchvision's IMAGENET1K_V1, the weights MSDN used; downloads once
            into the torch cache), a path to a ``state_dict`` file (for machines without internet),
            or ``"random"`` (seeded; for tests only).
    """
    import torch
    import torchvision

    if weights == "random":
        model = copy.deepcopy(_random_resnet101())
    elif weights == "imagenet":
        try:
            # Fetch before building: an offline failure then costs no 44M-weight initialisation.
            state = torchvision.models.ResNet101_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:  # urllib errors, hash check failures, read-only cache...
            raise DataError(f"cannot fetch torchvision's ImageNet ResNet-101 weights ({type(exc).__name__}: "
                            f"{exc}); offline machines: pass --weights PATH to a saved state_dict") from None
        model = torchvision.models.resnet101(weights=None)
        model.load_state_dict(state)
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(f"--weights: {path} is not a file; valid: imagenet, random, or a state_dict path")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(f"{path}: not a loadable state_dict ({type(exc).__name__}: {exc})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise DataError(f"{path}: expected a state_dict (name -> tensor), got {type(state).__name__}")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        model = torchvision.models.resnet101(weights=None)
        # fc is dropped anyway, so a backbone-only state_dict is accepted.
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise DataError(f"{path}: not a torchvision ResNet-101 state_dict (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}, ...)")
    backbone = torch.nn.Sequential(*list(model.children())[:-2])
    return backbone.eval()


@functools.lru_cache(maxsize=1)
def _random_resnet101() -> Any:
    """The seeded random ResNet-101, built once per process (initialising 44M weights takes seconds)."""
    import torch
    import torchvision

    # zero_init_residual keeps a random 101-layer network's activations small enough for fp16.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet101(weights=None, zero_init_residual=True)


def weights_label(weights: str) -> str:
    if weights == "random":
        return RANDOM_WEIGHTS_LABEL
    if weights == "imagenet":
        return "torchvision ResNet101_Weights.IMAGENET1K_V1"
    return f"state_dict {Path(weights).expanduser().resolve()}"


def image_transform(size: int) -> Any:
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(size),  # an int resizes the shorter side
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class ImageList:
    """A map-style dataset over image files -> ``(index, [3, size, size] tensor)``."""

    def __init__(self, paths: Sequence[Path], size: int, start: int = 0) -> None:
        self.paths = list(paths)
        self.start = start
        self.transform = image_transform(size)

    def __len__(self) -> int:
        return len(self.paths) - self.start

    def __getitem__(self, i: int) -> tuple[int, Any]:
        from PIL import Image

        row = self.start + i
        try:
            with Image.open(self.paths[row]) as im:
                return row, self.transform(im.convert("RGB"))
        except OSError as exc:
            # One line: DataLoader workers re-raise with a traceback appended; the CLI keeps line one.
            raise DataError(f"{self.paths[row]}: unreadable image (row {row}): {exc}") from None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: valid values are auto, cpu, cuda")
    return device


# ------------------------------------------------------------------ extraction
def extract_features(image_paths: Sequence[Path], out: Path, *, size: int = 448, device: str = "auto",
                     batch_size: int = 32, weights: str = "imagenet", workers: int | None = None,
                     provenance: dict[str, Any] | None = None, progress: bool = True,
                     on_batch: Callable[[int], None] | None = None) -> Path:
    """Extract region + pooled features of ``image_paths`` (in that row order) into the store ``out``.

    Resumes from ``<out>.tmp`` when one exists with the same settings (rows ``rows_done:`` only).

    Args:
        image_paths: local image files; row i of the store is image i.
        out: the store file to write (``features.h5``).
        size: input side after resize + centre crop (multiple of 32; 448 as MSDN, 224, or small for tests).
        device: auto, cpu or cuda.
        batch_size: images per forward pass, and per resumable write.
        weights: imagenet, random or a state_dict path (see :func:`build_backbone`).
        workers: DataLoader workers (default: up to 4, fewer on small machines).
        provenance: extra provenance fields (dataset, image list source...).
        on_batch: called with rows_done after each written batch (tests use it to simulate a kill).

    Returns:
        The path of the finished store.
    """
    import torch
    from tqdm import tqdm

    if size < STRIDE or size % STRIDE:
        raise ConfigError(f"--size {size}: must be a positive multiple of {STRIDE} (448 or 224 in papers)")
    if batch_size < 1:
        raise ConfigError(f"--batch {batch_size}: must be at least 1")
    paths = [Path(p) for p in image_paths]
    if not paths:
        raise DataError("the image list is empty; nothing to extract")
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise DataError(f"{len(absent)} of {len(paths)} images are missing, first: {absent[0]} "
                        "(see `zsl-bench data download`; images live under <root>/<DIR>/images/)")
    dev = resolve_device(device)
    out = Path(out)
    side = size // STRIDE
    prov = {"source": "real", "extractor": "torchvision resnet101 without avgpool+fc",
            "weights": weights_label(weights), "image_size": size, "grid": [side, side],
            "preprocess": f"resize shorter side {size}, centre crop {size}, ImageNet mean/std",
            "rows": len(paths), **(provenance or {})}
    _check_resumable(out, prov)

    backbone = build_backbone(weights).to(dev)
    if workers is None:
        workers = min(4, max(0, (os.cpu_count() or 1) - 1))
    with StoreWriter(out, len(paths), FEATURE_DIM, side * side, prov, with_pooled=True,
                     keep_partial=True) as writer:
        start = writer.rows_done
        if start:
            log.info("resuming %s at row %d of %d", out, start, len(paths))
        loader: Any = torch.utils.data.DataLoader(
            cast(Any, ImageList(paths, size, start)), batch_size=batch_size, shuffle=False, num_workers=workers,
            pin_memory=dev == "cuda", persistent_workers=False)
        bar = tqdm(total=len(paths), initial=start, unit="img", desc=f"extract {out.parent.name}",
                   disable=not progress)
        with bar, torch.inference_mode():
            for rows, images in _one_line_errors(loader):
                fmap = backbone(images.to(dev, non_blocking=True))  # [B, 2048, side, side]
                regions = fmap.flatten(2)  # [B, 2048, R]
                first = int(rows[0])
                assert first == writer.rows_done, "rows must arrive in order"
                writer.write(first, regions=regions.float().cpu().numpy(),
                             pooled=regions.mean(dim=2).float().cpu().numpy())
                bar.update(len(rows))
                if on_batch is not None:
                    on_batch(writer.rows_done)
    log.info("wrote %s: %d rows, regions (%d, %d, %d) fp16 + pooled", out, len(paths), len(paths),
             FEATURE_DIM, side * side)
    return out


def _one_line_errors(loader: Any) -> Any:
    """Iterate a DataLoader, turning a worker's re-raised DataError (message + traceback) into one line."""
    it = iter(loader)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except DataError as exc:
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            raise DataError(lines[-1].split("DataError: ", 1)[-1] if lines else "unreadable image") from None
        yield item


def _check_resumable(out: Path, prov: dict[str, Any]) -> None:
    """Refuse to continue a partial store written with different settings (rows would mix)."""
    import json

    import h5py

    tmp = out.with_name(out.name + ".tmp")
    if not tmp.exists():
        return
    try:
        with h5py.File(tmp, "r") as h5:
            old = json.loads(h5.attrs["provenance"])
    except (OSError, KeyError, ValueError):
        log.warning("%s is not a readable partial store; starting again", tmp)
        tmp.unlink()
        return
    keys = ("weights", "image_size", "rows", "dataset", "image_list")
    diff = [k for k in keys if old.get(k) != json.loads(json.dumps(prov.get(k), default=str))]
    if diff:
        raise DataError(f"{tmp}: a partial extraction with different settings ({', '.join(diff)}) exists; "
                        "rerun with the same settings to resume, or delete it to start over")


def extract_dataset(dataset: str, root: Path, *, size: int = 448, device: str = "auto", batch_size: int = 32,
                    weights: str = "imagenet", limit: int | None = None, images_dir: Path | None = None,
                    out: Path | None = None, image_files: Sequence[str] | None = None,
                    progress: bool = True) -> Path:
    """Extract a dataset's store from its images (the ``data extract`` command).

    Args:
        dataset: registry name.
        root: data root; the image list is read from ``<root>/<DIR>/``.
        limit: only the first ``limit`` rows (a smoke test); written to ``features-limit<N>.h5``.
        images_dir: where the images are (default ``<root>/<DIR>/images``).
        out: store path (default ``<root>/<DIR>/features.h5`` at 448 px, ``features-<size>px.h5`` at other
            sizes, e.g. ``features-224px.h5``: 7×7 maps, DAZLE's; the loader finds both, see
            :mod:`zsl_bench.data.features`).
        image_files: the published image list (default: read from the data root).
    """
    spec = get_spec(dataset)
    root = Path(root)
    files = list(image_files) if image_files is not None else read_image_list(dataset, root)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit {limit}: must be at least 1")
        files = files[:limit]
    images_dir = Path(images_dir) if images_dir else root / spec.dirname / "images"
    paths = [local_image_path(f, dataset, images_dir) for f in files]
    if out is None:
        name = store_name(size) if limit is None else f"features-limit{limit}.h5"
        out = root / spec.dirname / name
    prov = {"dataset": dataset, "image_list": "image_files (image_index.npz / res101.mat order)",
            "limit": limit}
    return extract_features(paths, out, size=size, device=device, batch_size=batch_size, weights=weights,
                            provenance=prov, progress=progress)
