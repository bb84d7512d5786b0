"""The documentation's shape: README stays short, and every relative link in README.md,
CONTRIBUTING.md, docs/*.md and benchmarks/README.md reaches an existing file (and heading, when it
names one). No network: links to other sites are not followed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import ROOT

DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "benchmarks" / "README.md",
        *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def without_code_blocks(text: str) -> str:
    """The text without fenced code blocks, where `[x](y)` is no link and `# x` no heading."""
    return re.sub(r"^ *```.*?^ *```", "", text, flags=re.MULTILINE | re.DOTALL)


def links(text: str) -> list[str]:
    """Link targets outside code blocks and inline code."""
    return LINK.findall(re.sub(r"`[^`\n]*`", "", without_code_blocks(text)))


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped (inline code's text kept), spaces to
    '-', a repeated anchor numbered -1, -2..."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", without_code_blocks(path.read_text()), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def test_docs_exist():
    for path in DOCS:
        assert path.is_file(), path


def test_readme_is_at_most_300_lines():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move detail to docs/"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in links(doc.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: another site, not checked here
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with anchor #{anchor} in {path.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)
