"""``hexpsi bench`` keeps working: every workload runs in quick mode and reports its shape."""

from __future__ import annotations

import json

import pytest

from hexpsi.server.bench.harness import Extra, RunOnce, Workload, discover, run_workloads
from hexpsi.server.cli.main import main


def test_every_workload_runs_quick_and_reports_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    workloads = out["workloads"]
    assert set(workloads) == set(discover())
    for name, stats in workloads.items():
        assert stats["runs"] == 1, name
        assert 0 < stats["min"] <= stats["seconds"] <= stats["max"], name
    assert workloads["snapshot_1m"]["bytes_per_token"] > 0


def test_only_selects_and_unknown_names_fail_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "--quick", "--only", "hash_to_group"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("hash_to_group")
    assert out.count("\n") == 1
    assert main(["bench", "--only", "no_such_workload"]) == 1
    err = capsys.readouterr().err
    assert "unknown workload(s): no_such_workload" in err
    assert err.count("\n") == 1


def test_list_names_every_workload(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert listed == set(discover())


def test_comparisons_are_ratios_of_the_same_run_with_their_targets() -> None:
    from hexpsi.server.bench.compare import compare

    results = {
        "snapshot_1m": {"seconds": 50.0, "vs_primitive_limit": 1.5},
        "openmined_setup_1m": {"seconds": 150.0, "bytes_per_item": 5.0},
        "mutual_100k": {"seconds": 20.0},
        "setcode_encode_1m": {"bytes_per_value": 5.1},
    }
    found = {name: (round(c.value, 3), c.met) for name, c in compare(results).items()}
    assert found == {
        "snapshot_speedup": (3.0, True),
        "snapshot_vs_primitive_limit": (1.5, False),
        "snapshot_bytes_ratio": (1.02, True),
    }


def test_workloads_sharing_an_interleave_key_take_turns() -> None:
    """Counterparts alternate run by run, so both sides of a ratio see the same minutes."""
    events: list[str] = []

    def workload(name: str, runs: int, interleave: str = "") -> Workload:
        def prepare(quick: bool) -> RunOnce:
            events.append(f"prepare {name}")

            def run() -> Extra:
                events.append(name)
                return {"turn": events.count(name)}

            return run

        return Workload(name, name, prepare, runs=runs, interleave=interleave)

    chosen = [
        workload("ours", 3, "pair"),
        workload("alone", 2),
        workload("theirs", 2, "pair"),
    ]
    results = run_workloads(chosen, quick=False)
    assert events == [
        "prepare ours",
        "prepare theirs",
        "ours",
        "theirs",
        "ours",
        "theirs",
        "ours",
        "prepare alone",
        "alone",
        "alone",
    ]
    assert list(results) == ["ours", "alone", "theirs"]
    assert [results[name].runs for name in results] == [3, 2, 2]
    assert results["ours"].extra == {"turn": 3}
