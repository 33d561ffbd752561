"""The benchmark script's --smoke mode runs and reports every method (timings are not checked)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("kmseg_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_smoke_run_reports_every_method(tmp_path, capsys):
    bench = _load_bench()
    out = tmp_path / "table.md"
    assert bench.main(["--smoke", "--data-dir", str(tmp_path / "data"), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.strip() in capsys.readouterr().out  # the same report is printed
    method_rows = [line for line in text.splitlines() if line.startswith("| astronaut crop")]
    for method in bench.METHODS:
        rows = [line for line in method_rows if f"| {method} |" in line]
        assert rows, f"no row for {method}"
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        wall, mse = cells[4], cells[6]
        assert float(wall) >= 0
        assert 0 < float(mse) < 1
    # The kmseg stage table lists the floors and the peak memory.
    assert "read floor s" in text and "write floor s" in text and "peak RSS GiB" in text
