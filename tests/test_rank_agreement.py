"""benchmarks/rank_agreement.py: Kendall's tau of simulated against published ZSL accuracy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rank_agreement.py"


def _load():
    spec = importlib.util.spec_from_file_location("rank_agreement", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rank_agreement_matches_names_and_counts_pairs(tmp_path, capsys):
    rows = tmp_path / "results.csv"
    lines = ["method,dataset,metric,value,seed"]
    for m, v in {"eszsl": 50, "sae": 40, "ale": 60, "tfvaegan": 70}.items():
        lines += [f"{m},awa2,zsl_acc,{v - 1},0", f"{m},awa2,zsl_acc,{v + 1},1", f"{m},awa2,h,1,0"]
    rows.write_text("\n".join(lines) + "\n")
    pub = tmp_path / "published.csv"
    pub.write_text("method,dataset,zsl_acc\nESZSL,AWA2,58.6\nSAE,AWA2,54.1\nALE,AWA2,62.5\ntf-VAEGAN,AWA2,72.2\n"
                   "ALE,AWA2,1.0\nTransZero++,AWA2,99.0\n")  # a second ALE row is ignored; ++ is another method
    assert _load().main([str(rows), "--published", str(pub), "--datasets", "awa2"]) == 0
    out = capsys.readouterr().out
    assert "eszsl 50.0/58.6" in out and "tfvaegan 70.0/72.2" in out and "transzero" not in out
    assert "all (4): Kendall tau 1.00" in out and "calibration methods (3): Kendall tau 1.00" in out


def test_rank_agreement_refuses_a_file_without_rows(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert _load().main([str(bad), "--published", str(bad)]) == 2
    assert "need zsl-bench rows" in capsys.readouterr().err
