"""The design the code cites is in the repository: every ``design.md §N`` (and ``rule N``)
and every ``protocol.md §N`` (and ``§N.M``: step M of section N) anywhere in the code, the
tests, the benchmarks or the docs resolves to a section of docs/design.md or
docs/protocol.md. A newcomer who follows a reference always lands somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHERE = ("ecrd", "tests", "bench", "docs", "scripts", "etc", "systemd")
CITATION = re.compile(r"(design|protocol)\.md ?§ ?(\d+)(?:\.(\d+))?(?: rules? (\d+))?")


def texts() -> dict[str, str]:
    files = [ROOT / "README.md"]
    for top in WHERE:
        files += [p for p in (ROOT / top).rglob("*") if p.is_file() and p.suffix in
                  (".py", ".md", ".toml", ".service", ".sh", "")]  # fmt: skip
    return {str(p.relative_to(ROOT)): p.read_text(errors="replace") for p in files}


def sections(doc: str) -> dict[int, str]:
    """Section number -> its text, from the ``## N. Title`` headings."""
    text = (ROOT / "docs" / f"{doc}.md").read_text()
    parts = re.split(r"^## (\d+)\. ", text, flags=re.M)
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


CITED = sorted(
    {(doc, int(n), int(sub) if sub else None, int(rule) if rule else None)
     for text in texts().values() for doc, n, sub, rule in CITATION.findall(text)},
    key=str,
)  # fmt: skip


def test_the_code_cites_the_design_at_all() -> None:
    assert any(doc == "design" for doc, *_ in CITED)
    assert any(doc == "protocol" for doc, *_ in CITED)


@pytest.mark.parametrize(("doc", "number", "step", "rule"), CITED)
def test_every_citation_resolves_to_a_section(
    doc: str, number: int, step: int | None, rule: int | None
) -> None:
    found = sections(doc)
    assert number in found, f"docs/{doc}.md has no section {number}"
    body = found[number]
    for item in (step, rule):
        if item is not None:
            assert re.search(rf"^{item}\. ", body, flags=re.M), (
                f"docs/{doc}.md §{number} has no item {item}"
            )
