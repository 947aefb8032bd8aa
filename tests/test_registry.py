"""The registries (filled lazily, once) and the dataset specs (one entry per dataset)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zsl_bench.contract import ZSLMethod
from zsl_bench.data.datasets import DatasetSpec, dataset_names, get_spec, parse_dataset_list
from zsl_bench.data.download import all_sources
from zsl_bench.errors import ZSLError
from zsl_bench.registry import DATASETS, METHODS, METRICS, Registry

REPO = Path(__file__).resolve().parents[1]


def test_first_lookup_fills_the_registry_and_import_alone_does_not() -> None:
    code = (
        "import sys\n"
        "from zsl_bench.registry import METHODS, DATASETS\n"
        "assert 'methods' not in sys.modules and 'zsl_bench.data.datasets' not in sys.modules\n"
        "assert METHODS.get('eszsl').name == 'eszsl'\n"
        "assert 'methods' in sys.modules\n"
        "assert DATASETS.names()[0] == 'cub'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, text=True, capture_output=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr


def test_loader_runs_once_and_registering_never_fills() -> None:
    calls: list[int] = []

    def load(reg: Registry[int]) -> None:
        calls.append(1)
        reg.add("b", 2)
        assert "b" in reg  # a lookup while filling sees what is registered so far, no recursion

    reg: Registry[int] = Registry("thing", load, ordered=True)
    reg.add("a", 1)
    assert calls == []
    assert reg.names() == ["a", "b"] and reg.get("B") == 2
    assert reg.names() == ["a", "b"] and calls == [1]


def test_duplicates_raise_and_unknown_names_suggest() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("alpha", 1)
    reg.add("alpha", 1)  # the same object again is fine (modules imported twice)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("alpha", 2)
    with pytest.raises(ZSLError, match=r"unknown thing 'alpah'\. Did you mean alpha\? Known: alpha"):
        reg.get("alpah")


def test_a_failing_loader_is_raised_and_retried() -> None:
    attempts: list[int] = []

    def load(reg: Registry[int]) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("built-in zoo broken")
        reg.add("x", 1)

    reg: Registry[int] = Registry("thing", load)
    with pytest.raises(ImportError):
        reg.names()
    assert reg.names() == ["x"] and len(attempts) == 2


def test_orders() -> None:
    assert METHODS.names() == sorted(METHODS.names())
    assert DATASETS.names() == dataset_names() == ["cub", "sun", "awa2", "flo"]  # registration order
    assert parse_dataset_list("all") == dataset_names()
    assert parse_dataset_list(" AWA2,cub ") == ["awa2", "cub"]
    assert "zsl_acc" in METRICS


def test_every_method_declares_the_contract_the_harness_reads() -> None:
    for name, cls in METHODS.items():
        assert issubclass(cls, ZSLMethod), name
        fields = set(getattr(cls.config_cls, "__dataclass_fields__", {}))
        # tuned_on_val names real config fields with candidates (the runner tunes them).
        for key, values in cls.tuned_on_val.items():
            assert key in fields and len(values) >= 1, (name, key)
        assert set(cls.presets) <= set(dataset_names()), name


def test_dataset_specs_are_complete() -> None:
    specs = [get_spec(n) for n in dataset_names()]
    streams = [s.sim_stream for s in specs]
    # The simulator's streams are fixed per dataset (data stays bit-identical when datasets are added).
    assert streams == [0, 1, 2, 3] and len(set(streams)) == len(streams)
    sources = all_sources()
    assert len({s.filename for s in sources}) == len(sources)
    for spec in specs:
        assert spec.dirname and spec.classes == spec.seen + spec.unseen
        assert spec.trainval + spec.test_seen + spec.test_unseen == spec.images
        dests = {p.dest for p in spec.downloads}
        assert f"{spec.dirname}/att_splits.mat" in dests and f"{spec.dirname}/images" in dests, spec.name
        assert spec.image_marker and spec.sim_groups >= 1 and "small" in spec.sim_scale
    with pytest.raises(ValueError, match="sim_stream"):
        DatasetSpec("new", "NEW", "d", 10, 2, 1, 4, 6, 2, 2, False)


def test_a_new_dataset_is_one_spec_entry(tmp_path: Path) -> None:
    """Registering one spec is enough for --datasets all, the simulator and the loader."""
    from zsl_bench.data import sim
    from zsl_bench.data.loader import load_from_dir

    reg_items = dict(DATASETS._items)
    try:
        DATASETS.add("toyds", DatasetSpec("toyds", "TOYDS", "a toy", 40, 4, 2, 12, 24, 8, 8, True,
                                          sim_stream=99, sim_groups=3))
        assert parse_dataset_list("all")[-1] == "toyds"
        assert sim.preset_params("tiny", "toyds").feature_dim == 32
        ddir = sim.generate("toyds", "tiny", out_root=tmp_path)
        assert ddir.name == "TOYDS" and (ddir / "w2v" / "TOYDS_attribute.npy").is_file()
        data = load_from_dir("toyds", ddir, source="simulated")
        assert data.name == "toyds" and len(data.seen_classes) == 5
    finally:
        DATASETS._items.clear()
        DATASETS._items.update(reg_items)
    assert "toyds" not in DATASETS


def test_ls_lists_in_registry_order(capsys: pytest.CaptureFixture[str]) -> None:
    from zsl_bench.cli.main import main

    assert main(["ls", "datasets"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == dataset_names()
    assert main(["ls", "metrics"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == METRICS.names()
