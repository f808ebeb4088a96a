"""Memory estimates against measured peaks: compile, sample and tracr at three sizes each.

    python benchmarks/memory.py            # the table (about a minute)

Each measurement runs in a fresh process: the peak resident set (``ru_maxrss``) after
the operation less the peak before it (imports and the spec already loaded), so the
figure is what the operation itself added. The estimate is the one the CLI checks
against the memory limit before allocating: ``param_count(cfg) * 4`` for a compiled
model (``craft.models.transformer``), ``specs.sample.sample_bytes`` for sampling, and
``craft.tracr.footprint.estimate`` (pilot compiles) for Tracr, computed in another
fresh process so the pilots do not raise the measured peak. The bar (issue #11) is a
ratio within a factor of 2.
"""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # not benchmarks/: its tracr.py would shadow Tracr

COMPILE_VOCABS = (2000, 4000, 8000)  # a "*" bigram over V tokens: a 2 x V x (V + 16) model
SAMPLE_SIZES = (20_000, 50_000, 100_000)  # sequences of the toy language (128 tokens)
TRACR_LENGTHS = (100, 200, 300)  # lib:length


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def wide_spec(vocab: int) -> str:
    """A spec of ``vocab`` tokens in four categories, one uniform "*" bigram row."""
    cats = {f"C{c}": [f"t{c}_{i}" for i in range(vocab // 4)] for c in range(4)}
    lines = ["format: craft-spec/1", f"name: wide{vocab}", "vocab:"]
    lines += [f"  {c}: [{', '.join(toks)}]" for c, toks in cats.items()]
    lines += ["max_len: 16", "start: {C0: 1}", "rules:", "  - bigram:"]
    lines += ['      "*": {C0: 1/4, C1: 1/4, C2: 1/4, C3: 1/4}']
    return "\n".join(lines) + "\n"


def child(kind: str, arg: str) -> dict:
    """Run one operation here; the estimate it checks and the peak it added."""
    logging.disable(logging.WARNING)
    if kind == "compile":
        from craft.compiler import compile_spec
        from specs.load import load_spec

        spec = load_spec(arg)
        before = _peak()
        model = compile_spec(spec, family="standard").model
        return {"estimate": model.n_params() * 4, "added": _peak() - before}
    if kind == "sample":
        from specs.load import load_library
        from specs.sample import sample, sample_bytes

        spec = load_library("toy_language")
        before = _peak()
        sample(spec, int(arg), spec.max_len, 0)
        return {"estimate": sample_bytes(spec, int(arg), spec.max_len), "added": _peak() - before}
    from craft.tracr.fast import from_rasp
    from craft.tracr.footprint import estimate
    from craft.tracr.program import load_program

    length = int(arg.split(":")[1])

    def compile_at(n: int):
        program, vocab = load_program("lib:length", max_len=n)
        return from_rasp(program, vocab, n)

    if kind == "tracr-estimate":
        return {"estimate": estimate(compile_at, length).bytes}
    compile_at(4)  # warm-up: the first compile imports and caches (so do the pilots)
    before = _peak()
    compile_at(length)
    return {"added": _peak() - before}


def _run(kind: str, arg: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, arg],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def rows() -> list[tuple[str, str, int, int]]:
    """(command, size, estimate, measured) for every case."""
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for vocab in COMPILE_VOCABS:
            path = Path(tmp) / f"wide{vocab}.yaml"
            path.write_text(wide_spec(vocab))
            got = _run("compile", str(path))
            table.append(("compile", f"{vocab} tokens", got["estimate"], got["added"]))
    for n in SAMPLE_SIZES:
        got = _run("sample", str(n))
        table.append(("sample", f"-n {n:,}", got["estimate"], got["added"]))
    for length in TRACR_LENGTHS:
        est = _run("tracr-estimate", f"lib:{length}")["estimate"]
        got = _run("tracr", f"lib:{length}")
        table.append(("tracr lib:length", f"--max-len {length}", est, got["added"]))
    return table


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from craft.memory import fmt

    table = Table(title="memory: estimate (checked before allocating) vs measured peak added")
    for col in ("command", "size", "estimate", "measured", "ratio", "within 2x"):
        table.add_column(col, justify="right")
    for command, size, est, got in rows():
        ratio = est / max(got, 1)
        ok = "yes" if 0.5 <= ratio <= 2 else "NO"
        table.add_row(command, size, fmt(est), fmt(got), f"{ratio:.2f}", ok)
    Console().print(table)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
    else:
        main()
