"""usable_cores: affinity lowered by a cgroup CPU quota (containers), on cgroup trees laid out
as the kernel lays them out (v2 unified, v1 per controller), in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emrops import machine


def _v2(root: Path, group: str, cpu_max: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    proc = root / "proc-cgroup"
    proc.write_text(f"0::/{group}\n")
    for rel, value in cpu_max.items():
        d = root / rel
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(value + "\n")
    return proc


def test_v2_quota_of_the_group_rounds_up(tmp_path: Path) -> None:
    proc = _v2(tmp_path, "kubepods/pod1/ctr", {"kubepods/pod1/ctr": "250000 100000"})
    assert machine.cgroup_quota(tmp_path, proc) == 2.5


def test_v2_tightest_quota_along_the_path_wins(tmp_path: Path) -> None:
    proc = _v2(
        tmp_path,
        "kubepods/pod1/ctr",
        {"kubepods": "max 100000", "kubepods/pod1": "150000 100000", "kubepods/pod1/ctr": "max"},
    )
    assert machine.cgroup_quota(tmp_path, proc) == 1.5


def test_v2_without_a_quota_is_none(tmp_path: Path) -> None:
    proc = _v2(tmp_path, "user.slice", {"user.slice": "max 100000"})
    assert machine.cgroup_quota(tmp_path, proc) is None
    assert machine.cgroup_quota(tmp_path, tmp_path / "no-such-file") is None


def test_v1_cfs_quota(tmp_path: Path) -> None:
    proc = tmp_path / "proc-cgroup"
    proc.write_text("11:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    group = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    group.mkdir(parents=True)
    (group / "cpu.cfs_quota_us").write_text("300000\n")
    (group / "cpu.cfs_period_us").write_text("100000\n")
    assert machine.cgroup_quota(tmp_path, proc) == 3.0
    (group / "cpu.cfs_quota_us").write_text("-1\n")  # unlimited
    assert machine.cgroup_quota(tmp_path, proc) is None


def test_usable_cores_is_the_smaller_of_affinity_and_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EMROPS_CPUS", raising=False)
    affinity = len(os.sched_getaffinity(0))
    tight = _v2(tmp_path / "a", "ctr", {"ctr": "50000 100000"})  # half a CPU -> 1
    assert machine.usable_cores(tmp_path / "a", tight) == 1
    loose = _v2(tmp_path / "b", "ctr", {"ctr": f"{(affinity + 10) * 100000} 100000"})
    assert machine.usable_cores(tmp_path / "b", loose) == affinity


def test_emrops_cpus_overrides_and_caps_the_copy_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMROPS_CPUS", "64")
    assert machine.usable_cores() == 64
    assert machine.default_jobs() == machine.MAX_COPY_JOBS
    monkeypatch.setenv("EMROPS_CPUS", "3")
    assert machine.default_jobs() == 3
    monkeypatch.setenv("EMROPS_CPUS", "zero")  # not a count: ignored
    assert machine.usable_cores() >= 1
