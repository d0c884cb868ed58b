"""The helpers every benchmark uses to write its table into docs/performance.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from devsupport.report import load_average, publish, work_directory, write_marked_section

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


def test_work_directory_keeps_a_given_path_and_removes_its_own(tmp_path: Path) -> None:
    kept = tmp_path / "kept" / "deeper"
    with work_directory(kept, "unused-") as work:
        assert work == kept and kept.is_dir()
    assert kept.is_dir()  # a --work directory is kept for debugging
    with work_directory(None, "tagdns-test-") as work:
        assert work.is_dir() and work.name.startswith("tagdns-test-")
        (work / "file").write_text("x")
    assert not work.exists()


def test_publish_prints_always_and_writes_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "performance.md"
    publish("body\n", doc, BEGIN, END, write=False)
    assert not doc.exists() and capsys.readouterr().out == "body\n\n"
    publish("body\n", doc, BEGIN, END, write=True)
    assert f"{BEGIN}\nbody\n{END}" in doc.read_text()
    assert capsys.readouterr().err.startswith("written to ")


def test_load_average_is_three_numbers() -> None:
    assert len([float(x) for x in load_average().split()]) == 3
