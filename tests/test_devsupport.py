"""The helpers every benchmark uses to write its table into docs/performance.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from devsupport.report import write_marked_section

BEGIN, END = "<!-- bench:x:begin -->", "<!-- bench:x:end -->"


def test_rewriting_a_section_keeps_every_other_byte(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Title\n\nbefore\n{BEGIN}\nold\n{END}\nafter\n")
    write_marked_section(doc, BEGIN, END, "new\n")
    assert doc.read_text() == f"# Title\n\nbefore\n{BEGIN}\nnew\n{END}\nafter\n"


def test_a_missing_section_is_appended_after_its_heading(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# Title\n\ntext\n")
    write_marked_section(doc, BEGIN, END, "table\n", heading="## X\n\n")
    assert doc.read_text() == f"# Title\n\ntext\n\n## X\n\n{BEGIN}\ntable\n{END}\n"


def test_one_marker_alone_is_an_error_not_a_guess(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Title\n{BEGIN}\nhalf a section\n")
    with pytest.raises(SystemExit, match="only one of the markers"):
        write_marked_section(doc, BEGIN, END, "table\n")
    assert doc.read_text() == f"# Title\n{BEGIN}\nhalf a section\n"


def test_every_recorded_section_rewrites_to_identical_bytes(tmp_path: Path) -> None:
    original = (Path(__file__).resolve().parents[1] / "docs" / "performance.md").read_text()
    doc = tmp_path / "performance.md"
    doc.write_text(original)
    for name in ("publish", "dns", "reload", "forward"):
        begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
        body = original[original.index(begin) + len(begin) + 1 : original.index(end)]
        write_marked_section(doc, begin, end, body)
    assert doc.read_text() == original
