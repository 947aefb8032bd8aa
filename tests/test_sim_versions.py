"""Generator versions: v1 (``zsl-bench-sim/1.2``) reproduces the 1.2 release bit for bit; names,
errors and the cache directories keyed by version and overrides; the loader passes them through."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from zsl_bench.data import sim
from zsl_bench.data.datasets import get_spec
from zsl_bench.data.loader import load_dataset
from zsl_bench.data.root import sim_root
from zsl_bench.errors import ConfigError

# v1_digest of what the 1.2 release (main at 1d36a1e, before the v2 split) wrote for these
# generations, computed with that code: ``generate(name, "tiny")`` and the two small ones below.
V1_DIGESTS = {
    "tiny-cub": "1bb66daf0407cc71bb41fb58a3e8a10f1916b63090c060dcec668683c2913dd2",
    "tiny-sun": "2054c97c75b1fbe0ff9cf9de4cb7d3d368acfa95e50ce87a882a35b82e14a8e4",
    "tiny-awa2": "aa2633daff5f7bfcd8ba6c1052b83f9b0166db7d55deecdaa68eb2d4c5706b3d",
    "tiny-flo": "95da7ef5b397e1f96065479f5680b4859614b2701c41083021ca3336d9a0b959",
    "small-cub-generated": "8ea48f60f5cd5aef5a7de9c777e52cad15309dbd5fc3a7284e61fc978a721511",
    "small-flo-real": "4d53101cfd44d176222d6c8f60c5e488467daa0aa1f1a3e1da15db69c803e957",
}


def v1_digest(ddir: Path, meta: bool = True) -> str:
    """One sha256 over every array and (``meta``) the sim.json a generation writes (files hold timestamps)."""
    parts = []
    for fname in ("image_index.npz", "ground_truth.npz"):
        with np.load(ddir / fname, allow_pickle=False) as z:
            parts += [(f"{fname}:{k}", np.ascontiguousarray(z[k]).tobytes()) for k in sorted(z.files)]
    mat = scipy.io.loadmat(ddir / "att_splits.mat")
    for k in sorted(m for m in mat if not m.startswith("__")):
        v = mat[k]
        parts.append((f"mat:{k}", str([str(np.asarray(x).ravel()[0]) for x in v.ravel()]).encode()
                      if v.dtype == object else np.ascontiguousarray(v).tobytes()))
    for f in sorted((ddir / "w2v").glob("*.npy")) if (ddir / "w2v").is_dir() else []:
        parts.append((f"w2v:{f.name}", np.load(f).tobytes()))
    with h5py.File(ddir / "features.h5", "r") as h5:
        parts.append(("regions", h5["regions"][()].tobytes()))
    if meta:
        parts.append(("sim.json", json.dumps(json.loads((ddir / "sim.json").read_text()), sort_keys=True).encode()))
    h = hashlib.sha256()
    for key, blob in parts:
        h.update(key.encode() + hashlib.sha256(blob).digest())
    return h.hexdigest()


@pytest.mark.parametrize("name", ["cub", "sun", "awa2", "flo"])
def test_v1_tiny_is_bit_identical_to_the_release(tmp_path: Path, name: str) -> None:
    ddir = sim.generate(name, "tiny", out_root=tmp_path, generator="1.2")
    assert json.loads((ddir / "sim.json").read_text())["generator"] == "zsl-bench-sim/1.2"
    assert not (ddir / sim.ENV_STORE_NAME).exists()
    assert v1_digest(ddir) == V1_DIGESTS[f"tiny-{name}"]


@pytest.mark.slow
def test_v1_small_is_bit_identical_to_the_release(tmp_path: Path, shared_root: Path) -> None:
    gen = sim.generate("cub", "small", out_root=tmp_path / "g", data_root=tmp_path / "empty", generator="1.2")
    real = sim.generate("flo", "small", out_root=tmp_path / "r", data_root=shared_root,
                        generator="zsl-bench-sim/1.2")
    assert v1_digest(gen) == V1_DIGESTS["small-cub-generated"]
    assert v1_digest(real) == V1_DIGESTS["small-flo-real"]


def test_versions_names_and_errors(tmp_path: Path) -> None:
    assert list(sim.GENERATORS) == ["4.0", "3.0", "2.0", "1.2"]
    assert sim.GENERATOR_VERSION == "zsl-bench-sim/2.0" == sim.GENERATORS["2.0"]
    assert sim.GENERATOR_VERSION_3 == "zsl-bench-sim/3.0" == sim.GENERATORS["3.0"]
    assert sim.GENERATOR_VERSION_4 == "zsl-bench-sim/4.0" == sim.GENERATORS["4.0"]
    # v4 is the default since results/ was regenerated under it (issue 16)
    assert sim.resolve_generator(None) == sim.DEFAULT_GENERATOR == "4.0"
    assert sim.resolve_generator("zsl-bench-sim/1.2") == "1.2"
    with pytest.raises(ConfigError, match=r"unknown sim generator '5.0'; valid: 4.0, 3.0, 2.0, 1.2"):
        sim.generate("cub", "tiny", out_root=tmp_path, generator="5.0")
    with pytest.raises(ConfigError, match=r"unknown sim parameter\(s\) \['context_strength'\] for generator 1.2"):
        sim.preset_params("tiny", "cub", "1.2", context_strength=0.5)
    with pytest.raises(ConfigError, match="'rho' must be in \\[0, 1\\]"):
        sim.preset_params("tiny", "cub", "2.0", rho=1.5)
    with pytest.raises(ConfigError, match="'unseen_shift' must be in"):
        sim.cache_root("tiny", 0, "2.0", unseen_shift=-0.1)
    assert isinstance(sim.preset_params("tiny", "cub", "2.0"), sim.SimParams)
    assert sim.preset_params("small", "flo", "2.0").latent_parts == 6  # v2's per-dataset scale on top of v1's
    assert sim.preset_params("small", "flo", "1.2").images_per_class == 8  # v1's stays
    assert sim.preset_params("small", "flo").images_per_class == 20  # v4, the default: v2's
    assert sim.preset_params("small", "awa2").images_per_class == 100  # v3's, kept by v4


def test_cache_root_is_keyed_by_version_and_overrides() -> None:
    default = sim.cache_root("small", 0)  # the default generator (4.0) without overrides
    assert default == sim_root("small", 0) == sim.cache_root("small", 0, "4.0")
    assert sim.cache_root("small", 0, "3.0").name == "small-seed0-sim3.0"
    v1 = sim.cache_root("small", 0, "1.2")
    assert v1.parent == default.parent and v1.name == "small-seed0-sim1.2"
    a = sim.cache_root("small", 0, "2.0", rho=0.5)
    assert a.name.startswith("small-seed0-sim2.0-") and a != default
    assert sim.cache_root("small", 0, "2.0", rho=0.5, context_strength=1) == sim.cache_root(
        "small", 0, "2.0", context_strength=1.0, rho=0.5)  # order and int/float do not matter
    assert len({a, sim.cache_root("small", 0, "2.0", rho=0.25), sim.cache_root("small", 1, "2.0", rho=0.5),
                sim.cache_root("small", 0, "1.2", rho=0.5)}) == 4


def test_loader_passes_generator_and_overrides() -> None:
    v1 = load_dataset("cub", sim_preset="tiny", sim_overrides={"generator": "1.2"})
    assert v1.provenance["generator"] == "zsl-bench-sim/1.2"
    v2 = load_dataset("cub", sim_preset="tiny", sim_overrides={"generator": "2.0", "rho": 0.5})
    meta = v2.provenance
    assert meta["generator"] == sim.GENERATOR_VERSION and meta["parameters"]["rho"] == 0.5
    assert meta["env_resampled_store"] == sim.ENV_STORE_NAME
    ddir = sim.cache_root("tiny", 0, "2.0", rho=0.5) / "CUB"
    assert (ddir / sim.ENV_STORE_NAME).is_file() and (ddir / "sim.json").is_file()
    with pytest.raises(ConfigError, match="unknown sim parameter"):
        load_dataset("cub", sim_preset="tiny", sim_overrides={"noise": 1.0})
    with pytest.raises(ConfigError, match="only to the simulated benchmark"):
        load_dataset("cub", sim_overrides={"rho": 0.5})


def test_cli_generator_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zsl_bench.cli.main import main as cli_main

    assert cli_main(["data", "sim", "awa2", "--preset", "tiny", "--generator", "1.2"]) == 0
    out = capsys.readouterr().out
    assert "generated" in out and str(sim.cache_root("tiny", 0, "1.2")) in out
    ddir = sim.cache_root("tiny", 0, "1.2") / "AWA2"
    assert json.loads((ddir / "sim.json").read_text())["generator"] == "zsl-bench-sim/1.2"
    assert cli_main(["data", "sim", "awa2", "--preset", "tiny", "--generator", "9"]) == 2
    assert "unknown sim generator '9'; valid: 4.0, 3.0, 2.0, 1.2" in capsys.readouterr().err


def test_calibrated_knobs_apply_per_dataset_and_semantics_source(tmp_path: Path, monkeypatch) -> None:
    table = {("cub", "real"): {"part_noise": 0.123}, ("cub", "generated"): {"part_noise": 0.456}}
    monkeypatch.setattr(sim, "CALIBRATED", table)
    assert sim.preset_params("small", "cub", "2.0", "real").part_noise == 0.123
    assert sim.preset_params("small", "cub", "2.0", "generated").part_noise == 0.456
    assert sim.preset_params("small", "cub", "2.0", "real", part_noise=0.9).part_noise == 0.9  # overrides win
    assert sim.preset_params("tiny", "cub", "2.0", "real").part_noise == sim.PRESET_SCALE["tiny"]["part_noise"]
    assert sim.preset_params("small", "sun", "2.0", "real").part_noise == sim.DEFAULTS.part_noise
    with pytest.raises(ConfigError, match="unknown semantics source 'fake'; valid: generated, real"):
        sim.preset_params("small", "cub", "2.0", "fake")
    # generate() picks the source it reads: no att_splits.mat under the data root -> generated
    monkeypatch.setitem(sim.PRESET_SCALE, "small", {**sim.PRESET_SCALE["small"], "images_per_class": 2,
                                                    "max_images": 400, "feature_dim": 16, "grid_side": 3})
    empty = tmp_path / "empty"
    empty.mkdir()
    ddir = sim.generate("cub", "small", out_root=tmp_path / "g", data_root=empty, generator="2.0")
    assert json.loads((ddir / "sim.json").read_text())["parameters"]["part_noise"] == 0.456


def test_noise_level_scales_every_noise_knob() -> None:
    half = sim.noise_level(0.5)
    assert set(half) == set(sim.NOISE_KNOBS)
    for k in sim.NOISE_KNOBS:
        assert half[k] == pytest.approx(0.5 * getattr(sim.DEFAULTS, k), abs=1e-4)
    assert sim.noise_level(10.0)["part_mix"] == 1.0  # a probability-like share, capped
    with pytest.raises(ConfigError, match="noise scale must be >= 0"):
        sim.noise_level(-1.0)


def test_v3_is_v2_off_awa2_small_and_full(tmp_path: Path) -> None:
    """v3 changes AWA2 only (small: size and noise scales; full: noise scales): elsewhere it writes
    v2's data bit for bit."""
    from dataclasses import asdict

    for name in ("cub", "sun", "flo"):
        for source in ("generated", "real"):
            for preset in ("small", "full"):
                v2 = sim.preset_params(preset, name, "2.0", source)
                v3 = sim.preset_params(preset, name, "3.0", source)
                assert type(v3) is sim.SimParams3 and asdict(v3) == asdict(v2), (name, source, preset)
    for source in ("generated", "real"):
        v2, v3 = (sim.preset_params("small", "awa2", g, source) for g in ("2.0", "3.0"))
        assert (v2.images_per_class, v3.images_per_class) == (24, 100)
        assert v3.max_images // 50 >= v3.images_per_class  # the budget does not cap AWA2's 50 classes
        assert v3.unseen_images_per_class == v2.unseen_images_per_class == 80
    # full (the real image counts) takes the calibrated noise scales, as in v2, and nothing else
    full2, full3 = (asdict(sim.preset_params("full", "awa2", g, "real")) for g in ("2.0", "3.0"))
    assert {k for k in full2 if full2[k] != full3[k]} == set(sim.NOISE_KNOBS)
    a = sim.generate("awa2", "tiny", out_root=tmp_path / "a", generator="2.0")
    b = sim.generate("awa2", "tiny", out_root=tmp_path / "b", generator="3.0")
    assert v1_digest(a, meta=False) == v1_digest(b, meta=False)  # every array; sim.json names the version
    with h5py.File(a / sim.ENV_STORE_NAME, "r") as ha, h5py.File(b / sim.ENV_STORE_NAME, "r") as hb:
        assert np.array_equal(ha["regions"][()], hb["regions"][()])
    assert json.loads((b / "sim.json").read_text())["generator"] == "zsl-bench-sim/3.0"
    assert sim.cache_root("small", 0, "2.0").name == "small-seed0-sim2.0"
    # what studies and checkpoints compare (a changed default reruns only units whose data changed):
    # v3 is v2 exactly where their parameters agree, for both semantics sources
    for name in ("cub", "sun", "flo", "awa2"):
        for preset in ("tiny", "small", "full"):
            same = all(asdict(sim.preset_params(preset, name, "2.0", source))
                       == asdict(sim.preset_params(preset, name, "3.0", source)) for source in ("generated", "real"))
            assert sim.data_version("zsl-bench-sim/3.0", name, preset) == ("2.0" if same else "3.0"), (name, preset)
            assert sim.data_version("2.0", name, preset) == "2.0" and sim.data_version("1.2", name, preset) == "1.2"
    assert sim.data_version(None, "AWA2", "small") == "4.0"  # the default; dataset names in any case
    assert sim.data_version(None, "CUB", "tiny") == "2.0"  # v4 writes v2's data on the tiny preset


def test_v4_is_v3_with_two_calibrated_knobs_per_cell(tmp_path: Path) -> None:
    """v4 changes the calibrated cells only: a noise scale and a part kernel width per (dataset,
    source), FLO taking CUB's; every other parameter (v3's AWA2 size included) is v3's, and on the
    tiny preset, where calibrated knobs do not apply, v4 writes v2's data bit for bit."""
    from dataclasses import asdict

    for name in ("cub", "sun", "flo", "awa2"):
        for source in ("generated", "real"):
            s, w = sim._CALIBRATED_V4[(name, source)]
            assert sim._CALIBRATED_V4[(name, source)] == sim._CALIBRATED_V4[("cub" if name == "flo" else name, source)]
            for preset in ("small", "full"):
                v3 = asdict(sim.preset_params(preset, name, "3.0", source))
                p4 = sim.preset_params(preset, name, "4.0", source)
                v4 = asdict(p4)
                assert type(p4) is sim.SimParams4 and p4.kernel_width == w, (name, source, preset)
                assert {k: v4[k] for k in sim.NOISE_KNOBS} == sim.noise_level(s), (name, source, preset)
                assert {k for k in v3 if v3[k] != v4[k]} <= {*sim.NOISE_KNOBS, "kernel_width"}, (name, source, preset)
            assert asdict(sim.preset_params("tiny", name, "4.0", source)) == asdict(
                sim.preset_params("tiny", name, "2.0", source))
            assert sim.data_version("4.0", name, "tiny") == "2.0"
            assert sim.data_version("zsl-bench-sim/4.0", name, "small") == sim.data_version("4.0", name, "full") == "4.0"
    assert sim.preset_params("small", "awa2", "4.0").images_per_class == 100  # v3's size
    assert len({sim._CALIBRATED_V4[c][1] for c in sim._CALIBRATED_V4}) > 1  # the width is chosen per cell
    a = sim.generate("sun", "tiny", out_root=tmp_path / "a", generator="2.0")
    b = sim.generate("sun", "tiny", out_root=tmp_path / "b", generator="4.0")
    assert v1_digest(a, meta=False) == v1_digest(b, meta=False)
    assert json.loads((b / "sim.json").read_text())["generator"] == "zsl-bench-sim/4.0"
    assert sim.cache_root("small", 0, "4.0") == sim_root("small", 0)  # the default's


def test_checkpoints_name_their_data() -> None:
    """The config digest leaves the default generator out, so a checkpoint's fingerprint names the
    data: v2's and v3's tiny CUB are one dataset, v1's and a rho override are others."""
    from zsl_bench.config import resolve
    from zsl_bench.engine import Engine
    from zsl_bench.registry import METHODS

    def ident(**overrides: object) -> str:
        data = load_dataset("cub", sim_preset="tiny", sim_overrides=overrides)
        return sim.data_identity(data.provenance, data.name)

    assert ident(generator="2.0") == ident(generator="3.0") == ident()
    assert len({ident(), ident(generator="1.2"), ident(generator="2.0", rho=0.5)}) == 3
    data = load_dataset("cub", sim_preset="tiny")
    engine = Engine(METHODS.get("ale"), resolve(METHODS.get("ale"), "cub"), data)
    assert engine.fingerprint("val", 0, np.arange(3))["data"] == ident()


@pytest.mark.parametrize("generator", ["3.0", "1.2"])
def test_generated_and_real_semantics_never_share_a_cached_dataset(tmp_path: Path, shared_root: Path,
                                                                  generator: str) -> None:
    """The cache is keyed by the semantics source and the real files read: a dataset generated without
    real metadata is not handed to a run that has it (or the reverse), nor one made from other real
    files. v1's parameters are the same for both sources, so only this key tells them apart; before,
    the default cache directory held whichever source ran last and v1 reused it for the other."""
    import shutil

    small = dict(images_per_class=2, max_images=400, min_images_per_class=2, feature_dim=8, grid_side=3)
    empty = tmp_path / "empty"
    gen = sim.generate("cub", "small", data_root=empty, generator=generator, **small)
    real = sim.generate("cub", "small", data_root=shared_root, generator=generator, **small)
    assert gen != real and gen.parent.name.startswith("small-seed0")
    meta = {d: json.loads((d / "sim.json").read_text()) for d in (gen, real)}
    assert not meta[gen]["real_semantics"] and meta[real]["real_semantics"]
    assert json.loads((real / sim.REAL_FILES_NAME).read_text()) == sim.real_files(get_spec("cub"), shared_root)
    stamp = (gen / "features.h5").stat().st_mtime_ns
    assert sim.generate("cub", "small", data_root=empty, generator=generator, **small) == gen  # cached, kept
    assert (gen / "features.h5").stat().st_mtime_ns == stamp
    # other real files (one class attribute changed): another directory
    other = tmp_path / "other"
    shutil.copytree(shared_root / "CUB", other / "CUB")
    mat = scipy.io.loadmat(other / "CUB" / "att_splits.mat")
    mat["att"][0, 0] += 0.5
    scipy.io.savemat(other / "CUB" / "att_splits.mat", {k: v for k, v in mat.items() if not k.startswith("__")})
    assert sim.generate("cub", "small", data_root=other, generator=generator, **small) not in (gen, real)
    # an explicit directory holding one source is regenerated, not reused, for the other
    out = tmp_path / "explicit"
    first = sim.generate("cub", "small", data_root=empty, out_root=out, generator=generator, **small)
    second = sim.generate("cub", "small", data_root=shared_root, out_root=out, generator=generator, **small)
    assert first == second and json.loads((second / "sim.json").read_text())["real_semantics"]
    assert sim.data_identity(meta[gen], "cub") != sim.data_identity(meta[real], "cub")
