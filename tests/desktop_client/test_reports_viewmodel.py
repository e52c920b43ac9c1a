"""Reports view-model: PDF (Qt's writer), HTML and CSV exports from the local store."""

from __future__ import annotations

import csv
import re
import unicodedata
import zlib
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from desktop_client.viewmodels.reports import ReportFormat, ReportsViewModel, with_suffix
from desktop_client.viewmodels.reports_pdf import render_svg
from shared.insights import svg_charts
from shared.insights.export import CSV_COLUMNS
from shared.insights.store import KINDS
from tests.desktop_client.insight_snapshot import load_batches, populate


@pytest.fixture
def node(tmp_path: Path) -> Path:
    root = tmp_path / "node"
    populate(root)
    return root


def pdf_pages(data: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))


def _objects(data: bytes) -> dict[int, bytes]:
    return {
        int(m.group(1)): m.group(2) for m in re.finditer(rb"(\d+) 0 obj(.*?)endobj", data, re.S)
    }


def _stream(body: bytes) -> bytes:
    found = re.search(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S)
    if found is None:
        return b""
    raw = found.group(1)
    if b"/FlateDecode" not in body[: found.start()]:
        return raw
    # A compressed image may hold the bytes "endobj"/"endstream" by chance, which cuts this
    # regex reading short; decompress what is whole (only text streams are read for text).
    return zlib.decompressobj().decompress(raw)


def _cmap(text: bytes) -> dict[int, str]:
    """A ToUnicode CMap's glyph -> text (bfchar and both bfrange forms)."""
    out: dict[int, str] = {}

    def chars(hexes: bytes) -> str:
        return bytes.fromhex(hexes.decode()).decode("utf-16-be")

    for block in re.findall(rb"beginbfchar(.*?)endbfchar", text, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            out[int(src, 16)] = chars(dst)
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", text, re.S):
        for lo, hi, rest in re.findall(
            rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*(\[[^\]]*\]|<[0-9A-Fa-f]+>)", block
        ):
            first, last = int(lo, 16), int(hi, 16)
            if rest.startswith(b"["):
                for offset, dst in enumerate(re.findall(rb"<([0-9A-Fa-f]+)>", rest)):
                    out[first + offset] = chars(dst)
            else:
                start = int(rest[1:-1], 16)
                for code in range(first, last + 1):
                    out[code] = chr(start + code - first)
    return out


def pdf_text(data: bytes) -> str:
    """The text a PDF reader would extract from Qt's PDF: each content stream's glyphs
    (``<hex> Tj`` after ``/Fn size Tf``) mapped through their font's ToUnicode CMap."""
    objects = _objects(data)
    fonts: dict[bytes, dict[int, str]] = {}
    for name, number in re.findall(rb"/(F\d+) (\d+) 0 R", data):
        unicode_ref = re.search(rb"/ToUnicode (\d+) 0 R", objects.get(int(number), b""))
        if unicode_ref:
            fonts[name] = _cmap(_stream(objects[int(unicode_ref.group(1))]))
    text = []
    for body in objects.values():
        content = _stream(body) if b"stream" in body else b""
        if b"Tj" not in content:
            continue
        current: dict[int, str] = {}
        for font, glyphs in re.findall(rb"/(F\d+) [\d.]+ Tf|<([0-9A-Fa-f]+)> Tj", content):
            if font:
                current = fonts.get(font, {})
            else:
                text.extend(
                    current.get(int(glyphs[i : i + 4], 16), "?") for i in range(0, len(glyphs), 4)
                )
    return unicodedata.normalize("NFKC", "".join(text))  # ligatures (ﬀ, ﬁ) back to letters


def test_pdf_has_pages_real_text_and_the_charts(node: Path, qapp: QApplication) -> None:
    result = ReportsViewModel(node).export(ReportFormat.PDF, node.parent / "out" / "report")
    assert result.ok, result.message
    assert result.path == node.parent / "out" / "report.pdf"
    assert str(result.path) in result.message
    data = result.path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert pdf_pages(data) >= 2
    # Real text: glyphs of embedded fonts that map back to Unicode, in reading order.
    text = "".join(pdf_text(data).split())
    batches = load_batches()
    for words in ("Price recommendations", "Demand forecasts", "Value of collaboration"):
        assert "".join(words.split()) in text
    for kind in KINDS:
        newest = [b for b in batches if b["kind"] == kind][-1]
        assert f"Model{newest['model_version']}" in text
    assert "".join(batches[-1]["rows"][0]["message"].split()) in text  # the value sentence
    assert re.search(rb"/Subtype\s*/Image", data)  # the charts
    title = "Insights for " + batches[-1]["node"]
    assert title.encode("utf-16-be") in data  # the document's title metadata
    assert list(result.path.parent.iterdir()) == [result.path]  # no temporary file left


def test_pdf_of_an_empty_section_still_writes(tmp_path: Path, qapp: QApplication) -> None:
    populate(tmp_path, kinds={"value"})
    result = ReportsViewModel(tmp_path).export(ReportFormat.PDF, tmp_path / "r.pdf")
    assert result.ok, result.message
    assert pdf_pages(result.path.read_bytes() if result.path else b"") >= 1


def test_html_report_is_written_with_every_section(node: Path) -> None:
    result = ReportsViewModel(node).export(ReportFormat.HTML, node / "report.HTML")
    assert result.ok and result.path == node / "report.HTML"
    html = result.path.read_text("utf-8")
    for batch in load_batches()[1:]:
        assert batch["model_version"] in html
    assert html.count("<section") == len(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_csv_holds_the_newest_batch_of_the_chosen_kind(node: Path, kind: str) -> None:
    result = ReportsViewModel(node).export(ReportFormat.CSV, node / f"{kind}.csv", kind)
    assert result.ok, result.message
    assert result.path is not None
    with result.path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0][: len(CSV_COLUMNS[kind])]) == CSV_COLUMNS[kind]
    newest = [b for b in load_batches() if b["kind"] == kind][-1]
    assert len(rows) - 1 >= len(newest["rows"]) > 0
    if kind == "pricing":
        assert [r[0] for r in rows[1:]] == [r["product_id"] for r in newest["rows"]]


def test_nothing_stored_says_so_and_writes_nothing(tmp_path: Path, qapp: QApplication) -> None:
    vm = ReportsViewModel(tmp_path)
    for fmt in ReportFormat:
        result = vm.export(fmt, tmp_path / "out" / "x")
        assert not result.ok and "No insights yet" in result.message and result.path is None
    assert not (tmp_path / "out").exists()
    assert vm.available_kinds() == []


def test_a_kind_not_computed_yet_is_named(tmp_path: Path) -> None:
    populate(tmp_path, kinds={"value"})
    vm = ReportsViewModel(tmp_path)
    assert vm.available_kinds() == ["value"]
    result = vm.export(ReportFormat.CSV, tmp_path / "p.csv", "pricing")
    assert not result.ok and "No pricing insights yet" in result.message


def test_bad_destinations_get_plain_messages(node: Path, qapp: QApplication) -> None:
    vm = ReportsViewModel(node)
    folder = node / "reports.pdf"
    folder.mkdir()
    result = vm.export(ReportFormat.PDF, folder)
    assert not result.ok and "is a folder" in result.message
    blocker = node / "not-a-folder"
    blocker.write_text("x")
    for fmt in ReportFormat:
        result = vm.export(fmt, blocker / "report")
        assert not result.ok and "Could not write" in result.message, fmt
        assert "Choose another folder" in result.message and "Traceback" not in result.message


def test_existing_report_is_replaced_whole(node: Path) -> None:
    target = node / "report.html"
    target.write_text("old report")
    result = ReportsViewModel(node).export(ReportFormat.HTML, target)
    assert result.ok and target.read_text("utf-8").startswith("<!DOCTYPE html>")


def test_suffixes_and_suggested_names() -> None:
    assert with_suffix(Path("a/report"), ReportFormat.PDF) == Path("a/report.pdf")
    assert with_suffix(Path("a/report.PDF"), ReportFormat.PDF) == Path("a/report.PDF")
    assert with_suffix(Path("a/report.pdf"), ReportFormat.CSV) == Path("a/report.pdf.csv")
    vm = ReportsViewModel(Path())
    assert re.fullmatch(
        r"insights-bundles-\d{4}-\d\d-\d\d\.csv", vm.suggested_name(ReportFormat.CSV, "bundles")
    )
    assert re.fullmatch(r"insights-\d{4}-\d\d-\d\d\.pdf", vm.suggested_name(ReportFormat.PDF))


def test_svg_charts_render_to_images_with_ink(qapp: QApplication) -> None:
    svg = svg_charts.bar_chart([("a", 1.0), ("b", 2.0)], title="t")
    image = render_svg(svg)
    assert image.width() > 400 and image.height() > 200
    colours = {
        image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)
    }
    assert len(colours) > 3  # not a blank page
