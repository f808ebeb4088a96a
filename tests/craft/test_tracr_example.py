"""``examples/tracr_sort.py`` runs and tells its story (small sample for speed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tracr_sort_example_finds_the_failure_and_plots(tmp_path: Path, capsys) -> None:
    path = ROOT / "examples" / "tracr_sort.py"
    spec = importlib.util.spec_from_file_location("_example_tracr_sort", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    (figure,) = module.main(tmp_path, samples=120)
    text = capsys.readouterr().out
    assert figure.stat().st_size > 10_000
    default, fixed = text.split("mlp_exactness=100:")[1].split("mlp_exactness=1000:")
    assert "minimal failure" in default and "then pass" in default
    assert "agreement 1.0000" in fixed
