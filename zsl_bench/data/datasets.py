"""The four standard ZSL datasets and their published facts (``../shared/data/zsl/README.md``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import DATASETS


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # registry key, lowercase
    dirname: str  # directory under the data root
    description: str
    images: int
    seen: int
    unseen: int
    semantic_dim: int
    trainval: int
    test_seen: int
    test_unseen: int
    has_word_vectors: bool
    semantic_kind: str = "attributes"  # attributes | sentence embedding


CUB = DATASETS.add("cub", DatasetSpec(
    "cub", "CUB", "Caltech-UCSD Birds-200-2011: 200 bird species, 312 attributes",
    11788, 150, 50, 312, 7057, 1764, 2967, True))
SUN = DATASETS.add("sun", DatasetSpec(
    "sun", "SUN", "SUN Attribute: 717 scene categories, 102 attributes",
    14340, 645, 72, 102, 10320, 2580, 1440, True))
AWA2 = DATASETS.add("awa2", DatasetSpec(
    "awa2", "AWA2", "Animals with Attributes 2: 50 animal classes, 85 attributes",
    37322, 40, 10, 85, 23527, 5882, 7913, True))
FLO = DATASETS.add("flo", DatasetSpec(
    "flo", "FLO", "Oxford Flowers-102: 102 flower classes, 1,024-d sentence embeddings",
    8189, 82, 20, 1024, 5631, 1403, 1155, False, "sentence embedding"))

ALL = ("cub", "sun", "awa2", "flo")


def get_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def parse_dataset_list(value: str) -> list[str]:
    """``"all"`` or a comma-separated list -> validated lowercase names."""
    if value.strip().lower() == "all":
        return list(ALL)
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    for n in names:
        DATASETS.get(n)  # raises with suggestions
    return names
