"""benchmarks/calibrate_sim.py: what it refuses and how it reads its inputs (the calibration itself
is a benchmark, not a test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from zsl_bench.errors import ConfigError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "calibrate_sim.py"


@pytest.fixture(scope="module")
def calib():
    spec = importlib.util.spec_from_file_location("calibrate_sim", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("method", ["msdn", "msdnpp", "transzero"])
def test_the_methods_under_study_are_refused(calib, method, capsys):
    assert calib.main(["--methods", f"eszsl,{method}", "--out", "/nonexistent/never-written"]) == 2
    err = capsys.readouterr().err
    assert method in err and "never used to choose the generator's knobs" in err and "dazle" in err


def test_bad_generator_semantics_and_parameters_are_refused_before_any_run(calib, capsys, tmp_path):
    out = tmp_path / "out"
    for argv, names in ([["--generator", "9.9"], ["9.9", "2.0", "1.2"]],
                        [["--semantics", "fake"], ["--semantics", "generated"]],
                        [["--generator", "1.2", "--set", "context_strength=0.5"], ["context_strength", "1.2"]],
                        [["--set", "cub.rho"], ["cub.rho", "KEY=VALUE"]],
                        [["--noise-scale", "cub=x"], ["--noise-scale", "'cub=x'", "DATASET=S"]],
                        [["--noise-scale", "-1"], ["noise scale must be >= 0"]]):
        assert calib.main([*argv, "--datasets", "cub", "--methods", "eszsl", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert all(n in err for n in names), (argv, err)
    assert not out.exists()


def test_overrides_apply_to_every_dataset_or_one(calib):
    got = calib.parse_overrides(["rho=0.5", "cub.region_noise=0.3", "awa2.occlusion=0.2", "jitter=x"])
    assert got == {"*": {"rho": 0.5, "jitter": "x"}, "cub": {"region_noise": 0.3}, "awa2": {"occlusion": 0.2}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        calib.parse_overrides(["=1"])


def test_targets_are_the_published_numbers_of_the_calibration_methods(calib, tmp_path):
    csv = tmp_path / "published.csv"
    csv.write_text("method,venue,dataset,zsl_acc,u,s,h,status,source\n"
                   "ESZSL,x,CUB,53.9,12.6,63.8,21.0,ok,src\n"
                   "DAZLE,x,SUN,59.4,52.3,24.3,33.2,ok,src\n"
                   "MSDN,x,CUB,76.1,68.7,67.5,68.1,ok,src\n"
                   "f-CLSWGAN,x,FLO,67.2,,,65.6,ok,src\n")
    assert calib.published_targets(csv) == {("eszsl", "cub"): {"zsl_acc": 53.9, "h": 21.0},
                                            ("dazle", "sun"): {"zsl_acc": 59.4, "h": 33.2}}


RECORDS = {"2.0": (SCRIPT.parent / "sim_calibration_v2.jsonl", "cub"),  # the runs behind the records in
           "3.0": (SCRIPT.parent / "sim_calibration_v3.jsonl", "awa2"),  # zsl_bench/data/sim.py
           "4.0": (SCRIPT.parent / "sim_calibration_v4.jsonl", "cub")}


@pytest.mark.parametrize("generator", sorted(RECORDS))
def test_a_cheap_slice_of_the_calibration_record_reproduces(calib, tmp_path, capsys, generator):
    """Each record's ESZSL and SAE runs (v2: CUB, v3: AWA2, the dataset it calibrated, v4: CUB; generated
    semantics, data seed 0, training seed 0) come out again from the record's command: the generator
    and the calibrated knobs are frozen."""
    import json

    from zsl_bench.data import sim

    record, dataset = RECORDS[generator]
    recorded = {r["method"]: r for r in map(json.loads, record.read_text().splitlines())
                if (r["dataset"], r["semantics"], r["data_seed"], r["seed"]) == (dataset, "generated", 0, 0)}
    assert {"eszsl", "sae"} <= set(recorded), record
    assert calib.main(["--generator", generator, "--datasets", dataset, "--semantics", "generated", "--methods",
                       "eszsl,sae", "--data-seeds", "0", "--seeds", "0", "--out", str(tmp_path)]) == 0
    assert f"| {dataset} | generated | eszsl | 1 |" in capsys.readouterr().out
    got = {r["method"]: r for r in map(json.loads, (tmp_path / "calibration.jsonl").read_text().splitlines())}
    for m in ("eszsl", "sae"):
        assert got[m]["key"] == recorded[m]["key"]  # the same effective generator parameters
        assert got[m]["generator"] == sim.GENERATORS[generator] == recorded[m]["generator"]
        for metric in ("zsl_acc", "h"):  # closed-form methods: equal up to float summation order
            assert abs(got[m][metric] - recorded[m][metric]) <= 0.5, (m, metric, got[m], recorded[m])


def test_the_rule_gaps_leave_out_methods_at_chance_and_average_over_seeds(calib):
    """The record's rule inputs, as the summary prints them: classic gap over ESZSL, SAE, ALE, DeViSE
    and SJE (a method below 3x chance left out), DAZLE gap, and DAZLE's gain over the classic mean."""
    targets = {("eszsl", "sun"): {"zsl_acc": 50.0, "h": 1.0}, ("ale", "sun"): {"zsl_acc": 60.0, "h": 1.0},
               ("devise", "sun"): {"zsl_acc": 55.0, "h": 1.0}, ("dazle", "sun"): {"zsl_acc": 65.0, "h": 1.0}}
    zsl = {("eszsl", 0, 0): 52.0, ("eszsl", 1, 0): 56.0, ("ale", 0, 0): 57.0, ("ale", 0, 1): 59.0,
           ("devise", 0, 0): 1.0, ("dazle", 0, 0): 70.0, ("dazle", 1, 1): 74.0, ("latem", 0, 0): 10.0}
    records = [{"dataset": "sun", "semantics": "real", "method": m, "data_seed": d, "seed": s, "zsl_acc": z,
                "h": 0.0, "chance": 1.4} for (m, d, s), z in zsl.items()]
    got = calib.rule_gaps(records, targets)[("sun", "real")]
    assert got["classic"] == ["eszsl", "ale"] and got["left_out"] == ["devise"]
    assert got["classic_gap"] == pytest.approx(((54 - 50) + (58 - 60)) / 2)
    assert got["dazle_gap"] == pytest.approx(72 - 65)
    assert got["gain"] == pytest.approx(72 - 56) and got["gain_published"] == pytest.approx(65 - 55)
    assert calib._spread([r for r in records if r["method"] == "ale"]) == ("–", "1.4")
    assert calib._spread([r for r in records if r["method"] == "eszsl"]) == ("2.8", "–")
    text = calib.summary(records, targets)
    assert "rule, sun (real semantics): classic gap +1.0 (eszsl, ale; below 3x chance, left out: devise)" in text


RECORD_TABLES = {  # the section of sim.py's docstring holding the table -> its jsonl files and datasets
    "TRAINING SEEDS": ((SCRIPT.parent / "sim_calibration_v2.jsonl", ("cub", "sun", "flo")),
                       (SCRIPT.parent / "sim_calibration_v3.jsonl", ("awa2",))),
    "V4 RECORD": ((SCRIPT.parent / "sim_calibration_v4.jsonl", ("cub", "sun", "flo", "awa2")),)}


@pytest.mark.parametrize("section", sorted(RECORD_TABLES))
def test_the_record_uses_several_seeds_and_its_table_comes_from_its_runs(calib, section):
    """A calibration record's table (sim.py's docstring, ``section``) covers 2 data seeds x 3 training
    seeds for every method of the rule, and each of its rows (mean ZSL per method, the rule's gaps) is
    what the runs in the jsonl files give: the table is computed, not typed."""
    import json
    import statistics

    from zsl_bench.data import sim

    doc = sim.__doc__
    doc = doc[doc.index(section):]
    table = doc[doc.index("DAZLE gain (published)"):].split("\n\n")[0].splitlines()[1:]
    rows = {(p[0], p[1]): p[2:] for p in (line.split() for line in table)}
    assert len(rows) == 8, rows
    targets = calib.published_targets(calib.PUBLISHED)
    methods = ("eszsl", "sae", "ale", "devise", "sje", "dazle", "latem")
    for record, datasets in RECORD_TABLES[section]:
        runs = [r for r in map(json.loads, record.read_text().splitlines()) if r["dataset"] in datasets]
        for ds in datasets:
            for sem in ("generated", "real"):
                cell = [r for r in runs if (r["dataset"], r["semantics"]) == (ds, sem)]
                for m in ("eszsl", "sae", "ale", "devise", "sje", "dazle"):
                    got = {(r["data_seed"], r["seed"]) for r in cell if r["method"] == m}
                    assert got == {(d, s) for d in (0, 1) for s in (0, 1, 2)}, (ds, sem, m, got)
                written = rows[(ds, sem)]
                for m, text in zip(methods, written):
                    z = [r["zsl_acc"] for r in cell if r["method"] == m]
                    assert text.startswith(f"{statistics.fmean(z):.1f}±") if z else text == "-", (ds, sem, m, text)
                gaps = calib.rule_gaps([r for r in cell if r["method"] != "latem"], targets)[(ds, sem)]
                classic, dazle = written[len(methods)], written[len(methods) + 1]
                assert classic == (f"{gaps['classic_gap']:+.1f}" if "classic_gap" in gaps else "-"), (ds, sem)
                assert dazle == (f"{gaps['dazle_gap']:+.1f}" if "dazle_gap" in gaps else "-"), (ds, sem)


def test_v4_rule_solves_two_planes_within_its_box_and_keeps_only_probes_on_v4_data(calib):
    """Generator v4's rule step: least-squares planes of the two gaps over (noise scale, kernel width),
    both zero, clipped to the search box and rounded; a probe counts only on v4's data up to the two
    knobs (v2's 24-image AWA2 is not v4's AWA2 at any knob)."""
    def gaps(s: float, w: float) -> tuple[float, float, float, float]:  # exact planes, zero at (1.0, 0.2)
        return s, w, -60 * (s - 1.0) + 150 * (w - 0.2), -50 * (s - 1.0) - 40 * (w - 0.2)

    assert calib.plane_solution([gaps(0.9, 0.12), gaps(1.1, 0.12), gaps(0.9, 0.3)]) == (1.0, 0.2)
    assert calib.plane_solution([gaps(0.9, 0.12), gaps(1.1, 0.12)]) is None  # two probes fix no plane
    far = [(s, w, g1 + 100, g2 + 100) for s, w, g1, g2 in (gaps(0.9, 0.12), gaps(1.1, 0.12), gaps(0.9, 0.3))]
    s, w = calib.plane_solution(far)
    assert calib.S_RANGE[0] <= s <= calib.S_RANGE[1] and calib.W_RANGE[0] <= w <= calib.W_RANGE[1]
    assert calib.plane_solution([gaps(0.9, 0.12), gaps(1.0, 0.12), gaps(1.1, 0.12)]) is None  # one line

    from zsl_bench.data import sim

    probe = {"dataset": "cub", "semantics": "generated", "generator": sim.GENERATORS["2.0"],
             "overrides": {**sim.noise_level(1.1), "kernel_width": 0.17}}
    assert calib.on_model(probe) and calib.knobs(probe) == (1.1, 0.17)
    assert calib.knobs({**probe, "overrides": {}}) == (0.99, 0.12)  # v2's calibrated CUB cell
    assert not calib.on_model({**probe, "dataset": "awa2"})  # v2's AWA2: 24 images per class
    assert calib.on_model({**probe, "dataset": "awa2", "generator": sim.GENERATORS["3.0"]})
    assert not calib.on_model({**probe, "overrides": {"rho": 0.5}})  # another knob is another model
    assert not calib.on_model({**probe, "overrides": {"region_noise": 0.9}})  # off the noise-scale axis
    assert not calib.on_model({**probe, "generator": sim.GENERATORS["1.2"], "overrides": {}})  # v1's fields
    # a run recorded twice at the same knobs (an exploratory run and a probe) counts once
    targets = {(m, "cub"): {"zsl_acc": 50.0, "h": 1.0} for m in (*calib.RULE_CLASSIC, "dazle")}
    runs = [{**probe, "method": m, "data_seed": d, "seed": 0, "zsl_acc": 50.0 + 10 * d, "h": 0.0, "chance": 2.0}
            for m in (*calib.RULE_CLASSIC, "dazle") for d in (0, 1)]
    once = calib.rule_choice(runs, targets, [0, 1], [0])[("cub", "generated")]["probes"]
    twice = calib.rule_choice(runs + [r for r in runs if r["data_seed"] == 0], targets, [0, 1], [0])
    assert once == twice[("cub", "generated")]["probes"] == [(1.1, 0.17, 5.0, 5.0, 0.0, 0.0)]
    s4, w4 = sim._CALIBRATED_V4[("sun", "real")]
    assert calib.knobs({"dataset": "sun", "semantics": "real", "generator": sim.GENERATORS["4.0"]}) == (s4, w4)


def test_v4_knobs_are_the_rule_choice_over_its_committed_probes(calib):
    """Generator v4's knobs (sim._CALIBRATED_V4) are what its rule chooses from the committed probes
    (v2's and v3's records at their knobs, and v4's probes): per cell the probe with the smallest
    larger |gap|, in a search that had ended (a probe within the tolerance or a repeated solution).
    FLO takes CUB's knobs."""
    import json

    from zsl_bench.data import sim

    files = ("sim_calibration_v2.jsonl", "sim_calibration_v3.jsonl", "sim_calibration_v4_probes.jsonl")
    records = [json.loads(ln) for f in files for ln in (SCRIPT.parent / f).read_text().splitlines() if ln.strip()]
    got = calib.rule_choice(records, calib.published_targets(calib.PUBLISHED), [0, 1], [0])
    assert {c for c in sim._CALIBRATED_V4 if c[0] != "flo"} == set(got)
    for cell, cell_got in got.items():
        worst, s, w = cell_got["choice"]
        assert (s, w) == sim._CALIBRATED_V4[cell], (cell, cell_got)
        assert worst <= 1.5, (cell, worst)  # the probes' seeds; the rule's tolerance is 1 point
        assert cell_got["done"], cell  # a probe within the tolerance, or the plane solution repeats a probe
    for source in ("generated", "real"):
        assert sim._CALIBRATED_V4[("flo", source)] == sim._CALIBRATED_V4[("cub", source)]


def test_probes_prints_the_rule_and_runs_nothing(calib, capsys, tmp_path):
    out = tmp_path / "never-written"
    probes = str(SCRIPT.parent / "sim_calibration_v4_probes.jsonl")
    assert calib.main(["--probes", probes, "--datasets", "cub", "--semantics", "generated", "--data-seeds", "0,1",
                       "--seeds", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "- probe, cub (generated semantics): s 0.980 w 0.150: classic gap -0.4, DAZLE gap -0.2" in text
    assert "- choice, cub (generated semantics): 3 probes; smallest larger |gap| 0.4 at s 0.980 w 0.150" in text
    assert "sun" not in text and not out.exists()
