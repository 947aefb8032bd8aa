"""The engine's CUDA code path, exercised on CPU: deferred loss sums and non-finite check, precision.

On CUDA the trainer reads loss terms and the non-finite flag once per epoch (``Engine.deferred_checks``);
on CPU it checks every step, as it always did. Forcing the deferred path on CPU runs the same code a
GPU runs (minus the device), so it is covered where CI has no GPU; ``tests/test_gpu.py`` runs it on CUDA.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from toys import NaNMethod  # noqa: F401  (registers nan_test)

from zsl_bench import engine as E
from zsl_bench.config import resolve
from zsl_bench.errors import DataError, TrainingError
from zsl_bench.registry import METHODS

K, A, F, R = 12, 6, 16, 4
SEEN, UNSEEN = np.arange(9), np.arange(9, 12)


def region_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N, F, R] region features whose mean is a linear map of the class attributes, labels, att."""
    rng = np.random.default_rng(seed)
    att = rng.random((K, A)).astype(np.float32)
    proj = rng.normal(size=(A, F)).astype(np.float32)
    labels = np.repeat(np.arange(K), 15).astype(np.int64)
    x = (att[labels] @ proj)[:, :, None] + 0.5 * rng.normal(size=(len(labels), F, R)).astype(np.float32)
    return np.maximum(x, 0).astype(np.float32), labels, att


def engine_for(method: str, epochs: int = 2, **train: object) -> E.Engine:
    x, labels, att = region_arrays()
    cls = METHODS.get(method)
    cfg = resolve(cls, "cub", None, {"train": {"epochs": epochs, "device": "cpu", "batch_size": 16, **train}})
    feats = x if cls.input == "regions" else x.mean(axis=2)
    return E.Engine.from_arrays(cls, cfg, feats, labels, att, SEEN, UNSEEN, name="cub")


def train(eng: E.Engine, epochs: int = 2, **kw: object) -> E.PhaseOutcome:
    d = eng.data
    split = E.EvalSplit("test", d.splits["trainval"][::4], d.splits["test_unseen"], SEEN, UNSEEN)
    args = dict(phase="oracle", train_rows=d.splits["trainval"], seen=SEEN, unseen=UNSEEN, epochs=epochs, seed=0,
                evaluation=split, progress=False)
    return eng.train(**{**args, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["msdn", "msdnpp", "ale"])
def test_deferred_path_trains_the_same_model(method: str) -> None:
    """Same batches, same steps: identical evaluations; loss means equal to float32 rounding."""
    eng = engine_for(method)
    ref = train(eng)
    eng.deferred_checks = True
    out = train(eng)
    for a, b in zip(ref.history, out.history):
        assert {k for k in a} == {k for k in b}
        for k, v in a.items():
            if k.startswith("test_") or k in ("phase", "epoch"):
                assert b[k] == v, k  # the model is the same to the last bit
            else:
                assert b[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k  # float32 device sums vs float64
    assert out.best is not None and ref.best is not None and out.best["h"] == ref.best["h"]


def test_deferred_nan_check_names_epoch_step_and_term() -> None:
    # 135 training rows in batches of 16 = 9 steps per epoch: global step 12 is epoch 2, step 3.
    eng = engine_for("nan_test", epochs=3)
    eng.cfg = resolve(METHODS.get("nan_test"), "cub", {"method": {"nan_step": 12}},
                      {"train": {"epochs": 3, "device": "cpu", "batch_size": 16}})
    eng.deferred_checks = True
    with pytest.raises(TrainingError, match=r"phase oracle, epoch 2, step 3: term 'bad' .*end of the epoch"):
        train(eng, epochs=3)
    eng.deferred_checks = False  # the per-step check stops at the same place
    with pytest.raises(TrainingError, match=r"phase oracle, epoch 2, step 3: term 'bad' = nan"):
        train(eng, epochs=3)


def test_training_labels_outside_the_phase_are_refused_once() -> None:
    eng = engine_for("msdn")
    rows = eng.data.splits["trainval"]
    with pytest.raises(DataError, match=r"msdn: training labels include classes outside .* \(e.g. class 8\)"):
        train(eng, train_rows=rows, seen=SEEN[:8], unseen=UNSEEN)


def test_precision_defaults_to_fp32_and_rows_record_it() -> None:
    eng = engine_for("msdn")
    assert eng.cfg.train.precision == "fp32" and eng.precision == "fp32"  # the official codes' precision
    assert eng.runtime() == "" and eng.resident() is None and not eng.deferred_checks
    assert E.precision_of(torch.device("cuda"), "bf16") == "bf16"
    assert E.precision_of(torch.device("cpu"), "bf16") == "bf16"  # the same meaning on every device
    assert isinstance(E.autocast(torch.device("cpu"), "fp32"), contextlib.nullcontext)
    with E.autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.bfloat16


def test_bf16_on_cpu_autocasts_and_deviates_little() -> None:
    fp32, bf16 = engine_for("ale"), engine_for("ale", precision="bf16")
    assert bf16.precision == "bf16"
    a, b = train(fp32), train(bf16)
    assert a.history != b.history  # bf16 really computed (differently)
    assert abs(a.history[-1]["test_h"] - b.history[-1]["test_h"]) < 25.0  # a sanity bound, not a claim


def test_load_resident_declines_off_cuda(tmp_path: Path) -> None:
    eng = engine_for("msdn")
    assert E.load_resident(eng.store, "regions", torch.device("cpu"), torch.float16) is None
    rows = eng.rows(eng.data.splits["trainval"])
    assert rows.in_memory and not rows.on_device
    pos = torch.tensor([3, 0, 5])
    assert torch.equal(rows.gather(pos), rows.get(pos.numpy()))
