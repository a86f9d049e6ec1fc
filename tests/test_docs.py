"""The documentation stays true: generated reference up to date, examples run."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from stimgen.protocol.loader import protocol_from_text
from stimgen.protocol.reference import BEGIN, END, render_reference

ROOT = Path(__file__).resolve().parents[1]


def test_protocol_reference_is_generated_from_models():
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    committed = text[text.index(BEGIN):text.index(END) + len(END)]
    assert committed == render_reference(), \
        "docs/protocol.md is stale: run python -m stimgen.protocol.reference docs/protocol.md"


def test_protocol_page_example_validates():
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    protocol = protocol_from_text(example)
    from stimgen.plan import plan_targets
    assert len(protocol.identities) * len(plan_targets(protocol.targets)) == 24


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_docs_links_resolve(page):
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", text):
        assert (ROOT / "docs" / target).exists(), f"{page} links to missing {target}"


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(((?:docs/)?[^)#:]+\.md)\)", text):
        assert (ROOT / target).exists(), f"README links to missing {target}"
