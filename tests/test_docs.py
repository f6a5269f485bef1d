"""The README is what a newcomer needs; the reference lives in docs/ pages it links.

(`make test` also builds the site with ``mkdocs build --strict``: a broken link between pages,
a page missing from the nav, or a missing anchor fails it.)
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")

#: the reference pages the README's sections became: per stage, per device, and the CLI convention
PAGES = ("architecture.md", "training.md", "calibration.md", "conversion.md", "comparison.md", "edge-app.md",
         "raspberry-pi.md", "jetson.md", "intel.md", "cli.md", "demo.md", "BENCHMARKS.md")


def test_readme_is_short_and_links_every_reference_page() -> None:
    assert len(README.splitlines()) < 200
    linked = {target for target, _ in LINK.findall(README)}
    for page in PAGES:
        assert f"docs/{page}" in linked, f"README does not link docs/{page}"
    for target in linked:
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README links {target}, which does not exist"


def test_readme_has_the_two_commands_and_the_three_jobs() -> None:
    assert "make demo" in README and "make test" in README
    for command in ("ssd-train", "ssd-calibrate", "ssd-convert", "ssd-compare", "ssd-edge"):
        assert re.search(rf"^    \.venv/bin/{command} ", README, flags=re.M), f"no copy-paste line for {command}"


def _nav_pages(nav: list) -> set[str]:
    out: set[str] = set()
    for item in nav:
        for value in (item.values() if isinstance(item, dict) else [item]):
            out |= _nav_pages(value) if isinstance(value, list) else {value}
    return out


def test_every_docs_page_is_in_the_site_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert set(PAGES) <= pages
    assert _nav_pages(config["nav"]) == pages


def test_benchmarks_open_with_one_table_of_current_results() -> None:
    text = (ROOT / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8")
    first = re.search(r"^## (.*)$", text, flags=re.M)
    assert first is not None and first.group(1) == "Current results"
    section = text[first.end():text.index("\n## ", first.end())]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")][1:]
    assert len(rows) >= 8
    for row in rows:
        command = row.rstrip(" |").rsplit(" | ", 1)[1]
        assert "`" in command, f"no command in: {row}"
