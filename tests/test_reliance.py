"""Context reliance: a run on simulated data whose directory holds an environment-resampled feature
store scores the test split a second time on it (same model, same γ, the same evaluation path).

The generator that writes such stores is not needed here: each test writes the store itself into a
copy of a tiny simulated dataset (identical features: reliance exactly 0; features perturbed on the
test rows: a known answer from a run that reads the perturbed features as its own).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from zsl_bench import metrics
from zsl_bench.data.loader import load_from_dir, read_sim_meta
from zsl_bench.data.sim import generate
from zsl_bench.errors import DataError
from zsl_bench.runner import RunSpec, run_one
from zsl_bench.tables import build_table, render_markdown

ENV_STORE = "features_env_resampled.h5"
RELIANCE = ("zsl_acc_env", "h_env", "reliance_zsl", "reliance_h")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny simulated CUB without an environment-resampled store (a generator that writes one:
    removed here, so that each test adds the store it means)."""
    ddir = generate("cub", "tiny", seed=0, out_root=tmp_path_factory.mktemp("sim"))
    meta = json.loads((ddir / "sim.json").read_text())
    if meta.pop("env_resampled_store", None):
        (ddir / ENV_STORE).unlink()
        (ddir / "sim.json").write_text(json.dumps(meta))
    return ddir


def _copy(tiny: Path, dest: Path) -> Path:
    ddir = dest / tiny.name
    shutil.copytree(tiny, ddir)
    return ddir


def _test_rows(ddir: Path) -> np.ndarray:
    data = _load(ddir)
    return np.sort(np.concatenate([data.splits["test_seen"], data.splits["test_unseen"]]))


def _perturb(path: Path, rows: np.ndarray) -> None:
    """A context-like change of ``rows``: a strong random vector per image on the border cells."""
    rng = np.random.default_rng(7)
    with h5py.File(path, "r+") as h5:
        regions = h5["regions"][()].astype(np.float32)  # [N, F, R]
        n, f, r = regions.shape
        side = int(round(r ** 0.5))
        border = [i for i in range(r) if i // side in (0, side - 1) or i % side in (0, side - 1)]
        env = np.abs(rng.standard_normal((len(rows), f, 1))).astype(np.float32) * 3.0
        block = regions[rows]
        block[:, :, border] += env
        regions[rows] = block
        h5["regions"][...] = regions.astype(h5["regions"].dtype)


def _with_env_store(ddir: Path, store: Path) -> None:
    shutil.copy(store, ddir / ENV_STORE)
    meta = json.loads((ddir / "sim.json").read_text())
    meta["env_resampled_store"] = ENV_STORE
    (ddir / "sim.json").write_text(json.dumps(meta))


def _load(ddir: Path):  # noqa: ANN202 (a ZSLData)
    return load_from_dir("cub", ddir, source="simulated", root=ddir.parent, provenance=read_sim_meta(ddir / "sim.json"))


def _run(ddir: Path, out: Path, protocol: str = "val") -> dict[str, float]:
    spec = RunSpec("eszsl", "cub", protocol=protocol, sim_preset="tiny")
    res = run_one(spec, out_dir=out, data=_load(ddir), progress=False)
    by_row = {r["metric"]: float(r["value"]) for r in res.rows}
    assert {k: by_row[k] for k in res.metrics} == res.metrics  # rows and metrics (MLflow) agree
    return res.metrics


def test_no_store_no_reliance_rows(tiny: Path, tmp_path: Path) -> None:
    got = _run(tiny, tmp_path / "run")
    assert not set(RELIANCE) & set(got)
    assert _load(tiny).env_resampled_features(_load(tiny).features) is None


@pytest.mark.parametrize("protocol", ["val", "test-oracle"])
def test_identical_store_gives_exactly_zero(tiny: Path, tmp_path: Path, protocol: str) -> None:
    ddir = _copy(tiny, tmp_path)
    _with_env_store(ddir, ddir / "features.h5")
    got = _run(ddir, tmp_path / "run", protocol)
    assert got["zsl_acc_env"] == got["zsl_acc"] and got["h_env"] == got["h"]
    assert got["reliance_zsl"] == 0.0 and got["reliance_h"] == 0.0


def test_perturbed_store_matches_a_run_on_the_perturbed_features(tiny: Path, tmp_path: Path) -> None:
    # Only test rows change, so selection and training (trainval, validation rows) are the same in
    # both runs: the second scoring must give what a run reading the perturbed features reports.
    ddir = _copy(tiny, tmp_path / "a")
    rows = _test_rows(ddir)
    perturbed = tmp_path / "perturbed.h5"
    shutil.copy(ddir / "features.h5", perturbed)
    _perturb(perturbed, rows)
    _with_env_store(ddir, perturbed)
    got = _run(ddir, tmp_path / "run-a")

    other = _copy(tiny, tmp_path / "b")
    shutil.copy(perturbed, other / "features.h5")
    want = _run(other, tmp_path / "run-b")
    assert got["zsl_acc_env"] == pytest.approx(want["zsl_acc"], abs=1e-9)
    assert got["h_env"] == pytest.approx(want["h"], abs=1e-9)
    assert got["reliance_zsl"] == pytest.approx(got["zsl_acc"] - got["zsl_acc_env"], abs=1e-12)
    assert got["reliance_h"] == pytest.approx(got["h"] - got["h_env"], abs=1e-12)
    assert got["reliance_zsl"] != 0.0 and got["reliance_h"] != 0.0


def test_bad_store_is_one_clear_error(tiny: Path, tmp_path: Path) -> None:
    ddir = _copy(tiny, tmp_path)
    meta = json.loads((ddir / "sim.json").read_text())
    (ddir / "sim.json").write_text(json.dumps({**meta, "env_resampled_store": ENV_STORE}))
    data = _load(ddir)
    with pytest.raises(DataError, match=f"feature store not found: .*{ENV_STORE}"):
        data.env_resampled_features(data.features)
    with h5py.File(ddir / ENV_STORE, "w") as h5:
        h5["regions"] = np.zeros((3, 32, 16), np.float16)
    with pytest.raises(DataError, match=f"{ENV_STORE}: holds 3 rows, expected {data.num_images}"):
        data.env_resampled_features(data.features)


def test_tables_show_reliance_only_when_rows_have_it() -> None:
    def rows(extra: bool) -> list[dict[str, object]]:
        out = []
        for seed in (0, 1):
            vals = {"zsl_acc": 50.0 + seed, "u": 40.0, "s": 60.0, "h": 48.0 + seed}
            if extra:
                vals.update({"reliance_zsl": 3.0 + seed, "reliance_h": 1.0, "zsl_acc_env": 47.0, "h_env": 47.0})
            out += [{"method": "eszsl", "variant": "default", "dataset": "cub", "seed": seed, "protocol": "val",
                     "source": "simulated", "sim_preset": "tiny", "metric": k, "value": v} for k, v in vals.items()]
        return out

    plain = build_table(rows(False))
    assert plain.metrics == ["zsl_acc", "u", "s", "h"]
    table = build_table(rows(True))
    assert table.metrics == ["zsl_acc", "u", "s", "h", "reliance_zsl", "reliance_h"]
    assert [c.mean for c in table.cells[0]] == [50.5, 40.0, 60.0, 48.5, 3.5, 1.0]
    md = render_markdown(table)
    assert "| CUB Rel Acc | CUB Rel H |" in md
    assert "U, S, H and context reliance (points lost when the environment is resampled) Acc, H in %" in md
    assert "**3.5" not in md  # reliance has no better direction: never bold
    # 0.0 in every row (no confounder in the data): left out of the table, and the caption says so.
    flat = [{**r, "value": 0.0} if str(r["metric"]).startswith("reliance") else r for r in rows(True)]
    table = build_table(flat)
    assert table.metrics == ["zsl_acc", "u", "s", "h"]
    assert table.caption.endswith("Not shown: context reliance (points lost when the environment is resampled) "
                                  "Acc, H, 0.0 in every row.")
    one = [{**r, "value": 0.5} if r["metric"] == "reliance_h" and r["seed"] == 1 else r for r in flat]
    assert build_table(one).metrics == ["zsl_acc", "u", "s", "h", "reliance_h"]  # one nonzero value keeps it
    assert metrics.spec("reliance_h").direction == "none"


def test_run_table_leaves_out_reliance_that_is_zero_everywhere() -> None:
    from zsl_bench.cli.run import format_table

    def rows(reliance: float) -> list[dict[str, object]]:
        vals = {"zsl_acc": 50.0, "u": 40.0, "s": 60.0, "h": 48.0, "reliance_zsl": reliance, "reliance_h": 0.0}
        return [{"method": "eszsl", "dataset": "cub", "seed": 0, "metric": k, "value": v} for k, v in vals.items()]

    kw = dict(method="eszsl", datasets=["cub"], seeds=[0], protocol="val", sim="small", sim_seed=0)
    flat = format_table(rows(0.0), **kw)
    assert "reliance" not in flat.splitlines()[1]  # the header
    assert flat.endswith("not shown: reliance ZSL, reliance H (0.0 in every row)")
    kept = format_table(rows(2.0), **kw)
    assert kept.splitlines()[1].split()[-2:] == ["reliance", "ZSL"]  # per column: a nonzero value keeps it
    assert kept.endswith("not shown: reliance H (0.0 in every row)")
