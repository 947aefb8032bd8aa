"""The CUDA path against the CPU path (``gpu``-marked: runs where CUDA exists, skipped elsewhere).

Tolerances, stated once (fp32 on CUDA runs with TF32 off, so it differs from CPU only in the order of
floating-point sums, which a few epochs of training amplify):

* fp32: every epoch's loss within ``FP32_LOSS_RTOL`` relative of the CPU run's; every evaluated
  metric (H, U, S, ZSL accuracy, in %) within ``FP32_METRIC_ATOL`` points.
* bf16 (opt-in, ``train.precision=bf16``): the deviation from the CPU numbers is printed (``-s`` shows it)
  and must stay below ``BF16_METRIC_ATOL`` points, a sanity bound, not a reproduction claim.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from test_engine_device import SEEN, UNSEEN, engine_for, train

from zsl_bench import engine as E

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")]

FP32_LOSS_RTOL = 1e-3
FP32_METRIC_ATOL = 1.0
BF16_METRIC_ATOL = 10.0
METRICS = ("test_h", "test_u", "test_s", "test_zsl_acc")


def on(eng: E.Engine, device: str, precision: str) -> E.Engine:
    import dataclasses

    cfg = dataclasses.replace(eng.cfg, train=dataclasses.replace(eng.cfg.train, device=device, precision=precision))
    return E.Engine(eng.method_cls, cfg, eng.data)


@pytest.mark.parametrize("method", ["msdn", "msdnpp", "ale"])
def test_fp32_gpu_run_matches_cpu(method: str) -> None:
    cpu = engine_for(method, epochs=4)
    ref = train(cpu, epochs=4)
    gpu = on(cpu, "cuda", precision="fp32")
    assert gpu.precision == "fp32" and gpu.deferred_checks
    out = train(gpu, epochs=4)
    assert "precision=fp32" in gpu.runtime()
    for a, b in zip(ref.history, out.history):
        assert b["loss"] == pytest.approx(a["loss"], rel=FP32_LOSS_RTOL)
        for k in METRICS:
            assert abs(b[k] - a[k]) <= FP32_METRIC_ATOL, (k, a[k], b[k])


@pytest.mark.parametrize("method", ["msdn", "msdnpp"])
def test_bf16_deviation_is_reported_and_bounded(method: str) -> None:
    cpu = engine_for(method, epochs=4)
    ref = train(cpu, epochs=4)
    gpu = on(cpu, "cuda", precision="bf16")
    out = train(gpu, epochs=4)
    assert gpu.precision == "bf16" and "precision=bf16" in gpu.runtime()
    held = gpu.resident()
    assert held is not None and held.dtype == torch.float16 and held.is_cuda
    dev = {k: max(abs(b[k] - a[k]) for a, b in zip(ref.history, out.history)) for k in METRICS}
    print(f"\n{method} bf16 vs CPU fp32, max |deviation| over 4 epochs (points): "
          + ", ".join(f"{k}={v:.2f}" for k, v in dev.items()))
    assert max(dev.values()) <= BF16_METRIC_ATOL, dev


def test_features_resident_in_the_precision_dtype() -> None:
    cpu = engine_for("msdn")
    fp32, bf16 = on(cpu, "cuda", precision="fp32"), on(cpu, "cuda", precision="bf16")
    assert fp32.resident().dtype == torch.float32 and bf16.resident().dtype == torch.float16
    rows = fp32.rows(cpu.data.splits["trainval"])
    assert rows.on_device
    pos = torch.tensor([4, 1, 7], device="cuda")
    expect = cpu.rows(cpu.data.splits["trainval"]).get(pos.cpu().numpy())
    assert torch.equal(rows.gather(pos).cpu(), expect)


def _syncs(eng: E.Engine, batch_size: int) -> int:
    import dataclasses

    eng.cfg = dataclasses.replace(eng.cfg, train=dataclasses.replace(eng.cfg.train, batch_size=batch_size))
    d = eng.data
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            eng.train(phase="final", train_rows=d.splits["trainval"], seen=SEEN, unseen=UNSEEN, epochs=1, seed=0,
                      progress=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("method", ["msdn", "msdnpp"])
def test_no_host_synchronisation_per_step(method: str) -> None:
    eng = on(engine_for(method), "cuda", precision="bf16")
    eng.resident()
    few, many = _syncs(eng, 64), _syncs(eng, 8)  # 3 steps vs 17 steps in the epoch
    assert few == many, f"host synchronisations grow with steps: {few} (3 steps) vs {many} (17 steps)"


def test_deferred_nan_check_on_cuda_names_the_epoch() -> None:
    from zsl_bench.config import resolve
    from zsl_bench.errors import TrainingError
    from zsl_bench.registry import METHODS

    eng = on(engine_for("nan_test", epochs=3), "cuda", precision="fp32")
    eng.cfg = resolve(METHODS.get("nan_test"), "cub", {"method": {"nan_step": 12}},
                      {"train": {"epochs": 3, "device": "cuda", "batch_size": 16}})
    with pytest.raises(TrainingError, match=r"epoch 2, step 3: term 'bad' .*end of the epoch on cuda"):
        train(eng, epochs=3)


def test_scores_equal_cpu_in_fp32() -> None:
    cpu = engine_for("msdn")
    ref = train(cpu)
    gpu = on(cpu, "cuda", precision="fp32")
    model = ref.model.to("cuda")
    rows = cpu.data.splits["test_unseen"]
    got = gpu.score(model, rows)
    want = cpu.score(ref.model.to("cpu"), rows)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
