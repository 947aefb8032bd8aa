"""The datasets: one :class:`DatasetSpec` per dataset holding every fact the harness knows about it.

Published counts (``../shared/data/zsl/README.md``), where its files come from (``data download``),
how its image paths are written (``data extract``), its attribute names, and how the simulated
benchmark mimics it (``data.sim``). Registration order is the order of tables, figures and
``--datasets all``.

Adding a dataset = one ``DATASETS.add`` entry below (plus a reader in ``readers.py`` only if its
files are in a format the loader does not read yet).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..registry import DATASETS


@dataclass(frozen=True)
class Origin:
    """One downloadable file from an official source (shared by the datasets packed in it).

    Attributes:
        filename: local name under ``<root>/downloads/`` and the name under a ``--mirror``.
        url: official URL.
        status: what is verified about the URL and the digest.
        size: exact size in bytes where known, else None (the server's Content-Length is used).
        sha256: expected digest where known, else None (recorded on the first download).
    """

    filename: str
    url: str
    status: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Piece:
    """What a dataset takes from an :class:`Origin`.

    Attributes:
        origin: the file it comes from.
        suffix: path inside the archive, matched on whole trailing components (the shortest match
            wins) so that a release re-packed under another top-level folder still works; ``""``
            for a plain (non-archive) file.
        dest: destination relative to the data root (a file or a directory).
    """

    origin: Origin
    suffix: str
    dest: str


@dataclass(frozen=True)
class DatasetSpec:
    """Everything per-dataset, in one place.

    Attributes:
        name: registry key, lowercase.
        dirname: directory under the data root; also names its files (``w2v/<DIR>_attribute.npy``,
            ``feature_map_ResNet_101_<DIR>.hdf5``).
        description: one line for ``zsl-bench ls datasets``.
        images, seen, unseen, semantic_dim, trainval, test_seen, test_unseen: published counts
            (the loader checks real data against them; ``full`` simulations use them).
        has_word_vectors: the release has attribute word vectors (``w2v/``).
        semantic_kind: attributes | sentence embedding.
        has_original_att: ``att_splits.mat`` has ``original_att`` (unnormalised semantics).
        has_class_names: ``att_splits.mat`` has ``allclasses_names``.
        attribute_names: file under ``<DIR>/`` naming the attributes (``.txt``: ``<id> <name>`` per
            line; ``.mat``: an ``attributes`` cell array), None when the release has none.
        part_groups: attribute names are ``<part>::<value>`` and the part is the attribute's group
            (CUB), used by the simulator with real semantics.
        image_marker: folder of the official image release that published image paths are
            relative to (``.../CUB_200_2011/images/<class>/<file>.jpg``); ``data extract``.
        downloads: what ``data download`` fetches for it.
        sim_stream: the simulator's random-stream index (``default_rng([seed, sim_stream, ...])``).
            Fixed per dataset, never derived from the registration order, so that adding or
            reordering datasets leaves every simulated dataset bit-identical.
        sim_groups: attribute groups (contiguous blocks) of generated semantics, and of real
            semantics without part names.
        sim_scale: per sim preset, ``SimParams`` overrides for this dataset (``small``: images
            per class set by the runtime budget, see ``data.sim``). Generator v1 (1.2) uses only these.
        sim_scale_v2: per sim preset, generator-v2 overrides applied on top of ``sim_scale`` (more
            images where v1 had too few: FLO, AWA2's unseen classes; FLO's visual latent parts).
    """

    name: str
    dirname: str
    description: str
    images: int
    seen: int
    unseen: int
    semantic_dim: int
    trainval: int
    test_seen: int
    test_unseen: int
    has_word_vectors: bool
    semantic_kind: str = "attributes"
    has_original_att: bool = True
    has_class_names: bool = True
    attribute_names: str | None = None
    part_groups: bool = False
    image_marker: str = "images"
    downloads: tuple[Piece, ...] = ()
    sim_stream: int = -1
    sim_groups: int = 6
    sim_scale: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)
    sim_scale_v2: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.sim_stream < 0:  # an internal invariant of the table below, not a user mistake
            raise ValueError(f"dataset {self.name!r}: give it an unused sim_stream >= 0")

    @property
    def classes(self) -> int:
        return self.seen + self.unseen

    @property
    def msdn_file(self) -> str:
        """File name of the MSDN / TransZero feature-map HDF5 release of this dataset."""
        return f"feature_map_ResNet_101_{self.dirname}.hdf5"


# URLs were checked against public code and READMEs (several independent repositories cite each);
# none of the sha256 digests are published by the dataset authors, so all are recorded on first
# download. Sizes are left to the server where no exact figure is published.
XLSA17 = Origin(
    "xlsa17.zip", "http://datasets.d2.mpi-inf.mpg.de/xian/xlsa17.zip",
    "URL verified (MPI-INF GBU project page, cited widely); sha256 unpublished; "
    "proposed splits + res101.mat for CUB, SUN, AWA2 (members under xlsa17/data/<DIR>/)")
CVPR18XIAN = Origin(
    "cvpr18xian.zip", "http://datasets.d2.mpi-inf.mpg.de/xian/cvpr18xian.zip",
    "f-CLSWGAN (CVPR'18) release with FLO; URL verified from public install scripts, "
    "member layout (…/FLO/att_splits.mat, res101.mat) unverified; sha256 unpublished")


def _xlsa17(origin: Origin, dirname: str) -> tuple[Piece, ...]:
    """The proposed-split files of ``dirname`` in an xlsa17-layout archive."""
    return tuple(Piece(origin, f"{dirname}/{f}", f"{dirname}/{f}") for f in ("att_splits.mat", "res101.mat"))


CUB = DATASETS.add("cub", DatasetSpec(
    "cub", "CUB", "Caltech-UCSD Birds-200-2011: 200 bird species, 312 attributes",
    11788, 150, 50, 312, 7057, 1764, 2967, True,
    attribute_names="attributes.txt", part_groups=True, image_marker="CUB_200_2011/images",
    downloads=(*_xlsa17(XLSA17, "CUB"),
               *(Piece(Origin("CUB_200_2011.tgz",
                              "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                              "Caltech DATA record 65de6-vp158 (~1.1 GB); URL verified; sha256 unpublished"),
                       suffix, dest)
                 for suffix, dest in (("CUB_200_2011/images", "CUB/images"),
                                      ("attributes.txt", "CUB/attributes.txt"))),),
    sim_stream=0, sim_groups=28,  # CUB's 28 part groups
    sim_scale={"small": dict(images_per_class=10, max_images=2000)}))

SUN = DATASETS.add("sun", DatasetSpec(
    "sun", "SUN", "SUN Attribute: 717 scene categories, 102 attributes",
    14340, 645, 72, 102, 10320, 2580, 1440, True,
    attribute_names="attributes.mat", image_marker="images",
    downloads=(*_xlsa17(XLSA17, "SUN"),
               Piece(Origin("SUNAttributeDB_Images.tar.gz",
                            "https://cs.brown.edu/people/gmpatter/Attributes/SUNAttributeDB_Images.tar.gz",
                            "SUN Attribute images (~1.8 GB); the historical ~gmpatter URL redirects here; "
                            "URL verified by reference only; sha256 unpublished"),
                     "images", "SUN/images"),
               Piece(Origin("SUNAttributeDB.tar.gz",
                            "https://cs.brown.edu/people/gmpatter/Attributes/SUNAttributeDB.tar.gz",
                            "SUN Attribute metadata (attribute names); URL verified by reference only; "
                            "sha256 unpublished"),
                     "SUNAttributeDB/attributes.mat", "SUN/attributes.mat")),
    sim_stream=1, sim_groups=6,
    sim_scale={"small": dict(images_per_class=5, max_images=3585)}))

AWA2 = DATASETS.add("awa2", DatasetSpec(
    "awa2", "AWA2", "Animals with Attributes 2: 50 animal classes, 85 attributes",
    37322, 40, 10, 85, 23527, 5882, 7913, True,
    attribute_names="predicates.txt", image_marker="JPEGImages",
    downloads=(*_xlsa17(XLSA17, "AWA2"),
               *(Piece(Origin("AwA2-data.zip", "https://cvml.ist.ac.at/AwA2/AwA2-data.zip",
                              "AwA2 images + metadata (~13 GB); URL verified; predicates.txt member "
                              "unverified; sha256 unpublished"),
                       suffix, dest)
                 for suffix, dest in (("Animals_with_Attributes2/JPEGImages", "AWA2/images"),
                                      ("predicates.txt", "AWA2/predicates.txt")))),
    sim_stream=2, sim_groups=5,
    sim_scale={"small": dict(images_per_class=24, max_images=1200)},
    # v2: 80 test images per unseen class (10 classes), so AWA2's ZSL accuracy is not a 240-image estimate
    sim_scale_v2={"small": dict(unseen_images_per_class=80)}))

_OXFORD = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
FLO = DATASETS.add("flo", DatasetSpec(
    "flo", "FLO", "Oxford Flowers-102: 102 flower classes, 1,024-d sentence embeddings",
    8189, 82, 20, 1024, 5631, 1403, 1155, False, "sentence embedding",
    has_original_att=False, has_class_names=False, image_marker="jpg",
    downloads=(*_xlsa17(CVPR18XIAN, "FLO"),
               Piece(Origin("102flowers.tgz", _OXFORD + "102flowers.tgz",
                            "Oxford-102 images (~330 MB); URL verified; sha256 unpublished"),
                     "jpg", "FLO/images"),
               Piece(Origin("imagelabels.mat", _OXFORD + "imagelabels.mat",
                            "Oxford-102 per-image labels; URL verified; sha256 unpublished"),
                     "", "FLO/oxford/imagelabels.mat"),
               Piece(Origin("setid.mat", _OXFORD + "setid.mat",
                            "Oxford-102 train/val/test ids; URL verified; sha256 unpublished"),
                     "", "FLO/oxford/setid.mat")),
    sim_stream=3, sim_groups=8,  # the 1024 sentence-embedding dims as 8 contiguous "attribute" groups
    sim_scale={"small": dict(images_per_class=8, max_images=816)},
    # v2: 20 images per class (v1's 8 left 6 for training, degenerate for deep methods), and visual
    # latents in 6 parts of 8 dimensions (the 1,024 embedding dims are semantics, not parts)
    sim_scale_v2={"small": dict(images_per_class=20, max_images=2040, latent_parts=6),
                  "full": dict(latent_parts=6)}))


def get_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def dataset_names() -> list[str]:
    """Every registered dataset, in registration order (the order of tables and ``all``)."""
    return DATASETS.names()


def in_table_order(present: Iterable[str]) -> list[str]:
    """``present`` dataset names in table order: registered ones in registration order (read now,
    so a dataset registered after import is placed too), then any others sorted."""
    present = set(present)
    order = dataset_names()
    return [d for d in order if d in present] + sorted(present - set(order))


def parse_dataset_list(value: str) -> list[str]:
    """``"all"`` or a comma-separated list -> validated lowercase names."""
    if value.strip().lower() == "all":
        return dataset_names()
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    for n in names:
        DATASETS.get(n)  # raises with suggestions
    return names
