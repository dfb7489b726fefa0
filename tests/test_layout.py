"""The house rules of docs/design.md that code can check: short functions, one Lightning trainer,
and the GNS kept small."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "physnet"


def _functions() -> list[tuple[int, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(PACKAGE)}::{node.name}"))
    return out


def test_no_function_in_the_package_is_over_100_lines() -> None:
    functions = _functions()
    assert len(functions) > 300  # the walk saw the package
    long = sorted(f for f in functions if f[0] > 100)
    assert not long, f"split these functions (lines, name): {long}"


def test_one_lightning_trainer_is_built() -> None:
    hits = [
        f"{p.relative_to(PACKAGE)}:{i}"
        for p in PACKAGE.rglob("*.py")
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "pl.Trainer(" in line or "lightning.Trainer(" in line
    ]
    assert len(hits) == 1 and hits[0].startswith("train/runner.py:"), hits


def test_gns_files_stay_under_1500_lines() -> None:
    files = sorted(PACKAGE.rglob("*gns*.py"))
    assert len(files) >= 3, files
    total = sum(len(f.read_text(encoding="utf-8").splitlines()) for f in files)
    assert total <= 1500, f"{total} lines in {files}"
