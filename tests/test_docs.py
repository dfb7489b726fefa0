"""The user-facing documents: README size and content rules, CI's command, links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_readme_is_short_and_has_no_run_paths() -> None:
    readme = (ROOT / "README.md").read_bytes()
    assert len(readme) <= 10_240, f"README.md is {len(readme)} bytes; move detail into docs/"
    assert b"runs/" not in readme, "README.md names a runs/ path; run logs go to docs/experiments/"


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == "bash scripts/install.sh && .venv/bin/python -m pytest"
    assert f"```bash\n{ci}\n```" in (ROOT / "README.md").read_text()


def test_relative_links_resolve() -> None:
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_readme_links_every_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    guides = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
    assert guides, "no guides in docs/"
    missing = [g for g in guides if f"({g})" not in readme]
    assert not missing, f"README.md does not link {missing}"
