"""The automatic thread choice follows the load during a study, not only the load at start-up."""

from __future__ import annotations

import logging

import pytest
import torch
from test_study import toy_run  # tests/ is on sys.path (rootdir conftest)

from zsl_bench import threads as T
from zsl_bench.study import StudyRunner, parse_spec


@pytest.mark.parametrize("load,own,want", [
    (2.3, 2, 2),    # quiet 2-core box, the load is this run's own two threads: keep both
    (11.0, 1, 1),   # ten other processes: one thread
    (3.1, 2, 1),    # one other process: one thread
    (1.0, 1, 2),    # the other process left: back to two
])
def test_own_threads_are_not_other_load(load, own, want):
    assert T.auto_threads(2, None, load, own=own).n == want


def test_workers_share_the_automatic_choice():
    assert T.auto_threads(8, None, 0.0, share=2).n == 4
    assert T.auto_threads(2, None, 0.0, share=4).n == 1  # never 0


def test_rechoose_keeps_a_given_count_and_redoes_an_automatic_one():
    given = T.ThreadChoice(2, "--threads")
    assert T.rechoose(given, load=50.0) is given
    auto = T.auto_threads(T.affinity_cpus(), None, 0.0)
    assert auto.auto and T.rechoose(auto, load=1000.0).n == 1


def test_study_makes_an_automatic_choice_again_before_each_unit(tmp_path, monkeypatch, caplog):
    spec = parse_spec({"name": "thr", "methods": ["study_toy"], "datasets": ["cub"], "seeds": [0, 1],
                       "sim": "tiny", "grid": {"variants": {"a": {"method.w": 1.0}}}})
    loads = iter([0.0, 40.0])  # idle when the first unit starts, busy before the second
    monkeypatch.setattr(T, "load_average", lambda: next(loads))
    monkeypatch.setattr(T, "affinity_cpus", lambda: 2)
    monkeypatch.setattr(T, "cgroup_quota", lambda: None)
    before = torch.get_num_threads()
    runner = StudyRunner(spec, tmp_path, run_fn=toy_run, progress=False)
    runner.threads = T.ThreadChoice(1, "auto: start", auto=True)
    try:
        with caplog.at_level(logging.INFO, logger="zsl_bench.threads"):
            runner.run()
        assert runner.threads.n == 1 and torch.get_num_threads() == 1
        changes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("threads:")]
        # unit 1: idle box -> 2 threads; unit 2: load 40 (1 of it ours... here 2) -> 1 thread
        assert changes[0].startswith("threads: 2 (auto: 2 CPU(s) in affinity, load average 0.0 (1 of it")
        assert changes[1].startswith("threads: 1 (auto: 2 CPU(s) in affinity, load average 40.0 (2 of it")
    finally:
        torch.set_num_threads(before)
