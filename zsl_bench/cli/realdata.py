"""``zsl-bench data download|extract|import``: real data from official sources, images or MSDN files."""

from __future__ import annotations

import argparse
from pathlib import Path

DOWNLOAD_EPILOG = """examples:
  zsl-bench data download cub --data-root ~/zsl           splits, res101.mat, images, attribute names
  zsl-bench data download all --mirror https://m.example/zsl   files fetched as <URL>/<filename>
Interrupted downloads resume (HTTP Range on the .part file); sha256 digests unknown in advance are
recorded in <root>/downloads/checksums.json on the first download and checked afterwards."""

EXTRACT_EPILOG = """examples:
  zsl-bench data extract cub --data-root ~/zsl --device cuda --batch 64     448-px, 14x14 regions
  zsl-bench data extract cub --size 224 --device cuda   7x7 regions (DAZLE's) into features-224px.h5
  zsl-bench data extract awa2 --limit 100 --device cpu                     smoke test (features-limit100.h5)
  zsl-bench data extract sun --weights ~/resnet101.pth                      offline (a saved state_dict)
Images are read from <root>/<DIR>/images/ in the order of image_files (image_index.npz or res101.mat).
448 px writes features.h5, another --size writes features-<size>px.h5 beside it; a method is fed the
size its paper used when present (pooled methods: res101.mat; docs/REPRODUCE.md).
A killed run resumes from the rows already written when rerun with the same settings."""

IMPORT_EPILOG = """examples:
  zsl-bench data import cub feature_map_ResNet_101_CUB.hdf5 --data-root ~/zsl
  zsl-bench data import cub clip_vitb16_cub.npy --data-root ~/zsl        your own (N, F) or (N, F, R) array
  zsl-bench data import cub feats.npz --key patches --data-root ~/zsl     one array of an .npz
An MSDN HDF5: checks keys, shapes, NaN, and labels/split indices against <root>/<DIR>/att_splits.mat
when present. A .npy/.npz array: rows must follow the release's image order (image_files), one per
image; the dataset's metadata (zsl-bench data download DATASET) must be in the data root first."""


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("download", help="download splits, features and images from official sources",
                       description="Download what a dataset needs from its official sources (resumable, "
                                   "sha256-verified, archives unpacked safely).",
                       epilog=DOWNLOAD_EPILOG, formatter_class=fmt)
    p.add_argument("dataset", metavar="DATASET|all", nargs="?",
                   help="a dataset (zsl-bench ls datasets), a comma list, or all")
    p.add_argument("--data-root", help="data root (default: $ZSL_BENCH_DATA or the cache)")
    p.add_argument("--mirror", metavar="URL", help="base URL replacing the official hosts: <URL>/<filename>")
    p.add_argument("--keep-archives", action="store_true", help="keep archives after unpacking")
    p.add_argument("--list", action="store_true", help="print the source table and exit")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("extract", help="extract ResNet-101 region features from images",
                       description="Extract region (N, 2048, R) fp16 and pooled features with torchvision "
                                   "ResNet-101 without avgpool/fc into <root>/<DIR>/features.h5.",
                       epilog=EXTRACT_EPILOG, formatter_class=fmt)
    p.add_argument("dataset", metavar="DATASET", help="a dataset: cub, sun, ... (zsl-bench ls datasets)")
    p.add_argument("--size", type=int, default=448, help="resize shorter side + centre crop (448, 224; "
                                                         "any multiple of 32)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--weights", default="imagenet", metavar="PATH|imagenet|random",
                   help="imagenet (torchvision, downloads), a state_dict file, or random (tests only)")
    p.add_argument("--data-root", help="data root (default: $ZSL_BENCH_DATA or the cache)")
    p.add_argument("--limit", type=int, help="only the first N images (written to features-limitN.h5)")
    p.add_argument("--images", metavar="DIR", help="image folder (default <root>/<DIR>/images)")
    p.add_argument("--out", metavar="FILE", help="store to write (default <root>/<DIR>/features.h5 at 448 px, "
                                                 "features-<size>px.h5 at other sizes)")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("import", help="your features into the store: an MSDN/TransZero HDF5 or a .npy/.npz array",
                       description="Stream an MSDN-layout HDF5 (feature_map (N, 2048, h, w), labels, locs), or "
                                   "a .npy/.npz array of (N, F) pooled or (N, F, R) region features (e.g. CLIP "
                                   "embeddings), into <root>/<DIR>/features.h5, validating it on the way.",
                       epilog=IMPORT_EPILOG, formatter_class=fmt)
    p.add_argument("dataset", metavar="DATASET", help="a dataset: cub, sun, ... (zsl-bench ls datasets)")
    p.add_argument("file", metavar="FILE.hdf5|FILE.npy|FILE.npz")
    p.add_argument("--key", metavar="NAME", help="the array to import from an .npz holding several")
    p.add_argument("--data-root", help="data root (default: $ZSL_BENCH_DATA or the cache)")
    p.add_argument("--out", metavar="FILE", help="store to write (default <root>/<DIR>/features.h5)")
    p.set_defaults(func=cmd_import)


def cmd_download(args: argparse.Namespace) -> int:
    from ..data.datasets import dataset_names, parse_dataset_list
    from ..data.download import all_sources, download_dataset
    from ..data.root import data_root
    from ..errors import ConfigError

    if args.list:
        for s in all_sources():
            need = ", ".join(sorted({m.dataset for m in s.members}))
            print(f"{s.filename}\t{need}\t{s.url}\tsha256={s.sha256 or 'recorded on first download'}\t{s.status}")
        return 0
    if not args.dataset:
        raise ConfigError(f"data download: name a DATASET ({', '.join([*dataset_names(), 'all'])}) or pass --list")
    root = data_root(args.data_root)
    for name in parse_dataset_list(args.dataset):
        for path in download_dataset(name, root, mirror=args.mirror, keep_archives=args.keep_archives):
            print(path)
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from ..data.extract import extract_dataset
    from ..data.root import data_root

    out = extract_dataset(args.dataset.lower(), data_root(args.data_root), size=args.size, device=args.device,
                          batch_size=args.batch, weights=args.weights, limit=args.limit,
                          images_dir=Path(args.images) if args.images else None,
                          out=Path(args.out) if args.out else None)
    print(out)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from ..data.importer import ARRAY_SUFFIXES, import_array, import_msdn_hdf5
    from ..data.root import data_root

    src, out = Path(args.file), Path(args.out) if args.out else None
    if src.suffix.lower() in ARRAY_SUFFIXES:
        out = import_array(src, args.dataset.lower(), data_root(args.data_root), key=args.key, out=out)
    else:
        if args.key:
            from ..errors import ConfigError

            raise ConfigError("--key applies to .npz arrays; an MSDN HDF5 is read from 'feature_map'")
        out = import_msdn_hdf5(src, args.dataset.lower(), data_root(args.data_root), out=out)
    print(out)
    return 0
