"""The loader benchmark runs end to end (one process per column, turns, allocator setting) on its generated files."""

from __future__ import annotations

from pathlib import Path

import pytest

from maedfer.apps import benchmark_loader


def test_columns_take_turns_in_their_own_processes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert benchmark_loader.main(["--world", str(tmp_path), "--items", "2", "--repeats", "2",
                                  "--cases", "dfew_test", "voxceleb2_pretrain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "one process per column" in lines[0] and "threads; torch" in lines[0]
    assert lines[1].split() == ["case", "exact", "ms", "fast", "ms"]
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[2:]}
    assert set(rows) == {"dfew_test", "voxceleb2_pretrain"}
    assert all(len(times) == 2 and all(0 < t < 10_000 for t in times) for times in rows.values())
