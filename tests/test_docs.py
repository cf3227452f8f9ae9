"""The README is a user's front page and docs/ holds the rest: links resolve, pages exist, no history."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = (
    "data.md",
    "configuration.md",
    "predict.md",
    "fer2013.md",
    "cluster.md",
    "paper-differences.md",
    "performance.md",
    "reliability.md",
    "testing.md",
    "architecture.md",
)
MAX_README_LINES = 250
# development history has no place in a user's docs: commit hashes, runs of other sessions, issue numbers,
# paths of the development machine
HISTORY = re.compile(
    r"commit `?[0-9a-f]{7,40}|`[0-9a-f]{7,12}`|previous (README )?run|this (session|task|commit)"
    r"|\.\./shared|issue [0-9]+"
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def without_code(text: str) -> str:
    """The text with fenced code blocks and inline code removed (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading anchors on its text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file, with GitHub's -1, -2 suffixes for repeated ones."""
    seen: dict[str, int] = {}
    found = set()
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    for line in text.splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        found.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return found


def relative_links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(without_code(path.read_text()))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def test_github_slug() -> None:
    assert github_slug("k-fold runs: the jobs' fixed cost") == "k-fold-runs-the-jobs-fixed-cost"
    assert github_slug("The demo's own departures") == "the-demos-own-departures"
    assert github_slug("`paper.yaml`") == "paperyaml"


def test_the_docs_pages_exist() -> None:
    missing = [page for page in PAGES if not (DOCS / page).is_file()]
    assert not missing, f"docs/ lacks {missing}"


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move detail into docs/"
    )
    text = README.read_text().lower()
    assert "snakemake" in text and "workflow" in text  # the workflow catalog looks for both
    for page in PAGES:
        assert f"docs/{page}" in README.read_text(), f"the README does not link docs/{page}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(path: Path) -> None:
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading with the anchor #{anchor} in {dest.name})")
    assert not broken, f"{path.relative_to(REPO)}: broken links: {broken}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_development_history(path: Path) -> None:
    hits = [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if HISTORY.search(line)
    ]
    assert not hits, f"{path.relative_to(REPO)} tells development history: {hits}"
