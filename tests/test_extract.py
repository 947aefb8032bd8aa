"""Feature extraction on a few dozen tiny generated JPEGs with random ResNet-101 weights (CPU, 64 px)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from zsl_bench.cli.main import main
from zsl_bench.data.extract import (
    RANDOM_WEIGHTS_LABEL,
    build_backbone,
    extract_features,
    image_transform,
    local_image_path,
    read_image_list,
)
from zsl_bench.data.store import FeatureStore
from zsl_bench.errors import ConfigError, DataError

SIZE = 64  # 2×2 regions: the smallest grid that still checks the region layout
N_IMAGES = 12


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


def _write_images(paths: list[Path], seed: int = 0) -> None:
    """Constant colours, all distinct, in mixed aspect ratios (exercises resize + centre crop)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.choice(256 ** 3, size=len(paths), replace=False)
    for i, (p, c) in enumerate(zip(paths, colours)):
        p.parent.mkdir(parents=True, exist_ok=True)
        rgb = (int(c) >> 16 & 255, int(c) >> 8 & 255, int(c) & 255)
        Image.new("RGB", (48 + 16 * (i % 3), 80 - 16 * (i % 3)), rgb).save(p, quality=95)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("imgs")
    paths = [root / f"c{i % 4}" / f"img_{i:03d}.jpg" for i in range(N_IMAGES)]
    _write_images(paths)
    return paths


@pytest.fixture(scope="module")
def straight(images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "features.h5"
    return extract_features(images, out, size=SIZE, device="cpu", batch_size=4, weights="random",
                            workers=0, progress=False, provenance={"dataset": "cub"})


def test_store_shape_and_provenance(straight: Path) -> None:
    with FeatureStore(straight) as st:
        assert (st.num_rows, st.feature_dim, st.num_regions, st.grid_side) == (N_IMAGES, 2048, 4, 2)
        assert st.dtype == np.float16
        assert st.provenance["weights"] == RANDOM_WEIGHTS_LABEL
        assert st.provenance["image_size"] == SIZE and st.provenance["dataset"] == "cub"
        pooled = st.read_pooled(np.arange(N_IMAGES))
        regions = st.read_regions(np.arange(N_IMAGES))
    np.testing.assert_allclose(pooled, regions.mean(axis=2), rtol=1e-2, atol=1e-3)
    assert np.isfinite(regions).all() and regions.std() > 0


def test_rows_follow_the_image_list(images: list[Path], straight: Path) -> None:
    """Each row equals a direct forward of that image alone (the colours make rows distinguishable)."""
    from PIL import Image

    model = build_backbone("random")
    tf = image_transform(SIZE)
    with FeatureStore(straight) as st:
        stored = st.read_regions(np.arange(N_IMAGES))
    batch = torch.stack([tf(Image.open(p).convert("RGB")) for p in images])  # [N, 3, S, S], list order
    with torch.inference_mode():
        direct = model(batch).flatten(2).numpy()  # [N, 2048, R]
    np.testing.assert_allclose(stored, direct, rtol=1e-2, atol=2e-3)
    # Different images really give different rows, so a permutation could not pass the check above.
    flat = direct.reshape(N_IMAGES, -1)
    dists = np.linalg.norm(flat[:, None] - flat[None], axis=2) + np.eye(N_IMAGES) * 1e9
    assert dists.min() > 20 * np.abs(stored - direct).max()


def test_resume_after_kill_matches_straight_run(images: list[Path], straight: Path, tmp_path: Path) -> None:
    out = tmp_path / "features.h5"

    def die_after_first(rows_done: int) -> None:
        raise KeyboardInterrupt  # like a Ctrl-C / kill between two batches

    with pytest.raises(KeyboardInterrupt):
        extract_features(images, out, size=SIZE, device="cpu", batch_size=4, weights="random", workers=0,
                         progress=False, provenance={"dataset": "cub"}, on_batch=die_after_first)
    tmp = out.with_name("features.h5.tmp")
    assert not out.exists() and tmp.exists()
    with h5py.File(tmp, "r") as h5:
        assert int(h5.attrs["rows_done"]) == 4
    seen: list[int] = []
    extract_features(images, out, size=SIZE, device="cpu", batch_size=4, weights="random", workers=0,
                     progress=False, provenance={"dataset": "cub"}, on_batch=seen.append)
    assert seen == [8, 12]  # only the remaining rows were computed
    assert not tmp.exists()
    with FeatureStore(out) as a, FeatureStore(straight) as b:
        idx = np.arange(N_IMAGES)
        np.testing.assert_allclose(a.read_regions(idx), b.read_regions(idx), rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(a.read_pooled(idx), b.read_pooled(idx), rtol=1e-4, atol=1e-5)


def test_resume_with_other_settings_refused(images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "features.h5"

    def die(rows_done: int) -> None:
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        extract_features(images[:8], out, size=SIZE, device="cpu", batch_size=4, weights="random", workers=0,
                         progress=False, on_batch=die)
    with pytest.raises(DataError, match="different settings.*image_size"):
        extract_features(images[:8], out, size=96, device="cpu", batch_size=4, weights="random", workers=0,
                         progress=False)


def test_bad_inputs_are_clear(images: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "f.h5"
    with pytest.raises(ConfigError, match="--size 50"):
        extract_features(images, out, size=50, weights="random", progress=False)
    with pytest.raises(DataError, match="1 of 3 images are missing, first: .*nope.jpg"):
        extract_features([*images[:2], tmp_path / "nope.jpg"], out, size=SIZE, weights="random", progress=False)
    with pytest.raises(ConfigError, match="--weights"):
        build_backbone(str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    torch.save([1, 2, 3], bad)
    with pytest.raises(DataError, match="expected a state_dict"):
        build_backbone(str(bad))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg: unreadable image \(row 1\)") as err:
        extract_features([images[0], broken], out, size=SIZE, weights="random", workers=1, progress=False)
    assert "\n" not in str(err.value)
    assert not out.exists()


@pytest.mark.parametrize("dataset,published,local", [
    ("cub", "/BS/xian/work/data/CUB_200_2011/images/001.Black_footed_Albatross/B_0001_796111.jpg",
     "001.Black_footed_Albatross/B_0001_796111.jpg"),
    ("cub", "CUB_200_2011/images/200.Common_Yellowthroat/C_0126_190407.jpg", "200.Common_Yellowthroat/C_0126_190407.jpg"),
    ("sun", "/BS/Deep_Fragments/work/MSc/data/SUN/images/a/abbey/sun_aakbdcgfpksytcwj.jpg", "a/abbey/sun_aakbdcgfpksytcwj.jpg"),
    ("awa2", "/BS/xian/work/data/Animals_with_Attributes2//JPEGImages/antelope/antelope_10001.jpg",
     "antelope/antelope_10001.jpg"),
    ("flo", "/BS/xian/work/data/Flowers/jpg/image_00001.jpg", "image_00001.jpg"),
])
def test_published_paths_map_under_images(dataset: str, published: str, local: str, tmp_path: Path) -> None:
    assert local_image_path(published, dataset, tmp_path / "images") == tmp_path / "images" / local


def test_unmappable_path_is_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no 'JPEGImages/' folder"):
        local_image_path("/somewhere/else/antelope.jpg", "awa2", tmp_path)


def test_real_image_lists_map(shared_root: Path, tmp_path: Path) -> None:
    for ds, n in (("cub", 11788), ("sun", 14340), ("awa2", 37322)):
        files = read_image_list(ds, shared_root)
        assert len(files) == n
        sample = files[::7]  # every 7th: all classes, a fraction of the path work
        local = {local_image_path(f, ds, tmp_path) for f in sample}
        assert len(local) == len(sample)  # the mapping keeps images distinct


def test_cli_extract_with_limit(shared_root: Path, tmp_path: Path) -> None:
    """`data extract` on a data root holding the real CUB image list and 6 generated images at its paths."""
    files = read_image_list("cub", shared_root)[:10]
    (tmp_path / "CUB").mkdir()
    np.savez(tmp_path / "CUB" / "image_index.npz", image_files=np.array(files))
    paths = [local_image_path(f, "cub", tmp_path / "CUB" / "images") for f in files[:6]]
    _write_images(paths, seed=1)
    rc = main(["data", "extract", "cub", "--data-root", str(tmp_path), "--size", str(SIZE), "--device", "cpu",
               "--batch", "4", "--weights", "random", "--limit", "6"])
    assert rc == 0
    out = tmp_path / "CUB" / "features-limit6.h5"
    with FeatureStore(out) as st:
        assert (st.num_rows, st.num_regions) == (6, 4)
        assert st.provenance["limit"] == 6 and st.provenance["weights"] == RANDOM_WEIGHTS_LABEL
    assert json.loads(h5py.File(out, "r").attrs["provenance"])["dataset"] == "cub"


def test_extract_size_other_than_448_writes_beside_the_default(shared_root: Path, tmp_path: Path) -> None:
    """`--size N` (N != 448) writes features-<N>px.h5, which the loader offers as that size's feature set."""
    from zsl_bench.data.extract import extract_dataset
    from zsl_bench.data.features import store_set

    files = read_image_list("cub", shared_root)[:4]
    paths = [local_image_path(f, "cub", tmp_path / "CUB" / "images") for f in files]
    _write_images(paths, seed=2)
    out = extract_dataset("cub", tmp_path, size=SIZE, device="cpu", batch_size=4, weights="random",
                          image_files=files, progress=False)
    assert out == tmp_path / "CUB" / f"features-{SIZE}px.h5" and not (tmp_path / "CUB" / "features.h5").exists()
    with FeatureStore(out) as st:
        fs = store_set(f"store-{SIZE}px", st)
        assert fs.label("regions") == f"regions {SIZE} px R=4 (extracted, features-{SIZE}px.h5)"
        assert fs.is_paper("regions", SIZE) and not fs.is_paper("regions", None)


def test_imagenet_weights_offline_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision downloads ImageNet weights on first use; offline that must be one clear line."""
    import urllib.error

    import torchvision.models._api as tv_api

    calls: list[str] = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    # Patched where torchvision looks it up: the test never touches the network or the torch cache.
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    with pytest.raises(DataError, match="cannot fetch torchvision's ImageNet ResNet-101 weights.*--weights PATH"):
        build_backbone("imagenet")
    assert calls and calls[0].endswith(".pth")


def test_state_dict_weights_file(tmp_path: Path) -> None:
    """--weights PATH: a torchvision state_dict (here without fc, as backbone-only files are) loads exactly."""
    from zsl_bench.data.extract import _random_resnet101

    state = {k: v for k, v in _random_resnet101().state_dict().items() if not k.startswith("fc.")}
    path = tmp_path / "resnet101.pth"
    torch.save(state, path)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.inference_mode():
        np.testing.assert_array_equal(build_backbone(str(path))(x).numpy(), build_backbone("random")(x).numpy())
    del state["layer4.2.conv3.weight"]
    torch.save(state, path)
    with pytest.raises(DataError, match="not a torchvision ResNet-101 state_dict.*layer4.2.conv3.weight"):
        build_backbone(str(path))
