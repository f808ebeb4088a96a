"""The HTML reports in a real headless browser (Debian's chromium): ``craft diff``'s
``report.html`` and ``craft eval --html`` render with no console message (errors and
warnings alike), every attention view is drawn by circuitsvis, and the page needs no
network. A planted script error shows the console check can fail."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from craft.cli import main
from craft.compiler import compile_spec
from craft.models import save_model
from specs import library_path, load_spec
from verify.gauge import apply_gauge

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=8000"]  # fmt: skip
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (make test installs it)"
)


def browse(page: Path, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Load ``page`` in headless chromium: (the DOM after scripts ran, console lines)."""
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, "--dump-dom", page.as_uri()]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return run.stdout, console


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """``craft diff`` (crafted induction model vs a gauge-transformed copy) and
    ``craft eval --html``, written by the CLI."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: a thread pool only contends on a busy CPU
    try:
        return _write_reports(tmp_path_factory.mktemp("html"))
    finally:
        torch.set_num_threads(threads)


def _write_reports(out: Path) -> dict[str, Path]:
    spec_path = library_path("induction")
    model = compile_spec(load_spec(spec_path), "standard").model
    save_model(model, out / "crafted.safetensors")
    other = apply_gauge(model.double(), np.random.default_rng(3)).float()
    other.meta, other.layout = {}, None
    save_model(other, out / "trained.safetensors")
    argv = ["diff", str(out / "crafted.safetensors"), str(out / "trained.safetensors"),
            "--spec", str(spec_path), "-o", str(out / "diff"), "-n", "40"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main([*argv, "--json"]) == 0  # the report is written with --json too
    diff_json = json.loads(printed.getvalue())
    assert diff_json["format"] == "craft-diff/1" and diff_json["crafted"] == argv[1]
    assert diff_json["spec"] == {"name": "induction", "sha256": load_spec(spec_path).sha256}
    argv = ["eval", str(out / "crafted.safetensors"), "--spec", str(spec_path), "-n", "20",
            "--html", str(out / "eval.html")]  # fmt: skip
    assert main(argv) == 0
    return {"diff": out / "diff" / "report.html", "eval": out / "eval.html"}


def _views(html_text: str) -> list[str]:
    return re.findall(r'class="attn" id="(attn-\d+)"', html_text)


@needs_browser
@pytest.mark.parametrize("which", ["diff", "eval"])
def test_report_renders_in_chromium(which, reports, tmp_path) -> None:
    text = reports[which].read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?https?:""", text)
    views = _views(text)
    assert views and (len(views) % 2 == 0 or which == "eval")  # diff: crafted | trained
    dom, console = browse(reports[which], tmp_path / "profile")
    assert console == [], console
    for vid in views:  # circuitsvis drew into every placeholder: head selector and canvases
        drawn = dom.split(f'id="{vid}"', 1)[1].split('class="attn"', 1)[0]
        assert "Head Selector" in drawn and drawn.count("<canvas") >= 2, vid
    # the figures, inlined: eval's direct path; every figure the diff drew for report.md
    pngs = 1 if which == "eval" else len(list((reports[which].parent / "figures").glob("*.png")))
    assert pngs >= 1 and dom.count("<img") == pngs
    assert "Behaviour per rule" in dom


@needs_browser
def test_console_check_catches_a_script_error(tmp_path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    _, console = browse(page, tmp_path / "profile")
    assert any("undefinedFunction" in line for line in console)


def test_report_files_and_refusals(reports, tmp_path, capsys) -> None:
    """The diff writes report.html beside report.md; --html may not overwrite an input."""
    assert (reports["diff"].parent / "report.md").is_file()
    spec_path = library_path("induction")
    crafted = reports["eval"].parent / "crafted.safetensors"
    argv = ["eval", str(crafted), "--spec", str(spec_path), "-n", "5", "--html", str(crafted)]
    assert main(argv) == 2
    assert "destroy the input" in capsys.readouterr().err


def test_diff_summary_is_a_table_that_fits_100_columns() -> None:
    from verify.diff import diff
    from verify.diff_cli import summary

    spec = load_spec(library_path("induction"))
    model = compile_spec(spec, "standard").model
    text = summary(diff(model, model, spec, n_seqs=20))
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "induction:induction" in text and "behaviour per rule" in text
    assert "──" in text  # rich's rule under the header
