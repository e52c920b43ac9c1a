"""Read a retailer's export (CSV/TSV, .xlsx, Parquet) into an Arrow table without interpreting it.

Readers only find the table: format, encoding, delimiter, header and the spreadsheet row number
of every record. Values stay as the file had them (text for CSV) so that parsing can report each
bad cell by row and column. Readers open the source read-only and never write to it.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import mmap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

SNIFF_BYTES = 256 * 1024
CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
NULL_TOKENS = ["", "NA", "N/A", "n/a", "#N/A", "NULL", "null", "None", "nan", "NaN"]


class UnreadableSource(Exception):
    """The file cannot be read as a table at all; the message tells the user what to do."""


@dataclass(frozen=True)
class MalformedRow:
    row: int | None
    expected_fields: int
    actual_fields: int
    text: str


@dataclass
class RawTable:
    """A source file's table with its provenance; column names are the file's own headers."""

    path: Path
    source_format: str
    table: pa.Table
    row_numbers: np.ndarray
    encoding: str | None = None
    delimiter: str | None = None
    header_renames: dict[str, str] = field(default_factory=dict)
    malformed_rows: list[MalformedRow] = field(default_factory=list)
    sheet: str | None = None
    complete: bool = True  # False for a sample that stops before the end of the file
    _as_text: pa.Table | None = field(default=None, repr=False)
    _read_columns: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._read_columns = list(self.table.column_names)

    def release(self, column: str) -> None:
        """Forget a column once it has been parsed: the text copy is the biggest thing held."""
        if column in self.table.column_names:
            self.table = self.table.drop_columns([column])

    @property
    def headers(self) -> list[str]:
        return list(self.table.column_names)

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def cell_text(self, column: str, indices: np.ndarray) -> list[str | None]:
        """The cells as the retailer wrote them ("-1.50", not Arrow's typed -1.5), for reports.

        Only a delimited file whose column Arrow typed needs a second, all-text read; that read
        happens at most once, and only when a typed column has something to report.
        """
        values = self.table.column(column)
        if self.source_format in ("csv", "tsv") and not pa.types.is_string(values.type):
            if self._as_text is None:
                self._as_text = read_table(
                    self.path,
                    encoding=self.encoding,
                    delimiter=self.delimiter,
                    columns=self._read_columns,
                ).table
            if self._as_text.num_rows == self.table.num_rows:
                values = self._as_text.column(column)
        picked = values.take(pa.array(indices)).to_pylist()
        return [None if v is None else str(v) for v in picked]


def read_table(
    path: Path,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    columns: Sequence[str] | None = None,
    text_columns: Sequence[str] | None = None,
    sample_only: bool = False,
) -> RawTable:
    """Read any supported export; raise UnreadableSource with a user-facing message if not.

    ``sample_only`` reads just the first rows (to suggest a mapping before the full read).
    ``text_columns`` makes a delimited read keep those columns as text and let Arrow type the
    others; a column Arrow cannot type cleanly falls back to text, so nothing is lost, and clean
    exports are typed by Arrow's multi-threaded reader instead of by slower text parsing.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except FileNotFoundError as exc:
        raise UnreadableSource(f"{path}: file not found. Check the path and try again.") from exc
    except IsADirectoryError as exc:
        raise UnreadableSource(f"{path}: this is a folder; choose a sales export file.") from exc
    except OSError as exc:
        raise UnreadableSource(f"{path}: cannot open the file ({exc.strerror}).") from exc
    kind = detect_format(path, head)
    if kind == "xlsx":
        return read_xlsx(path, sheet=sheet)
    if kind == "parquet":
        return read_parquet(path, columns=columns, sample_only=sample_only)
    if kind == "xls":
        raise UnreadableSource(
            f"{path}: this is an old Excel (.xls) workbook. Open it in your spreadsheet program "
            "and save it as .xlsx or CSV, then import that file."
        )
    return read_delimited(
        path,
        head,
        encoding=encoding,
        delimiter=delimiter,
        columns=columns,
        text_columns=text_columns,
        sample_only=sample_only,
    )


def detect_format(path: Path, head: bytes) -> str:
    """Trust the file's magic bytes before its extension: exports are often misnamed."""
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "xls"
    return "csv"


# --------------------------------------------------------------------------------------------
# Delimited text


_EMPTY_LINES: dict[tuple[str, int, int], bool] = {}


def has_empty_lines(path: Path) -> bool:
    """Memory-mapped search, cached per file version so a sample and a full read share it."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _EMPTY_LINES:
        found = False
        if stat.st_size:
            with (
                path.open("rb") as handle,
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data,
            ):
                found = data.find(b"\n\n") >= 0 or data.find(b"\n\r\n") >= 0
        _EMPTY_LINES.clear()
        _EMPTY_LINES[key] = found
    return _EMPTY_LINES[key]


def detect_encoding(path: Path, head: bytes, *, whole_file: bool = False) -> str:
    """UTF-8 (with or without BOM) when it decodes as such, else a legacy guess.

    Only the head is checked at first: Arrow validates UTF-8 itself while reading, and a file
    it rejects is read again with ``whole_file=True``, which checks every byte.
    """
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8"  # Arrow skips the BOM itself
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        raise UnreadableSource(
            f"{path}: this looks like a binary file, not a sales export. Export your sales as "
            "CSV, Excel (.xlsx) or Parquet and import that file."
        )
    data = path.read_bytes() if whole_file else head
    try:
        # final: a multi-byte character cut off at the end of the data is only acceptable
        # when the sample boundary cut it, not when the head is the whole file.
        final = whole_file or len(head) < SNIFF_BYTES
        codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(head, cp_isolation=["cp1252", "latin_1", "iso8859_15", "cp850"]).best()
    guess = best.encoding if best is not None else "cp1252"
    try:
        codecs.decode(path.read_bytes(), guess)
    except UnicodeDecodeError:
        guess = "latin-1"  # decodes any byte sequence
    return "cp1252" if guess in {"windows-1252", "cp1252"} else guess


def _decode_head(head: bytes, encoding: str) -> str:
    text = head.decode(encoding, errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    if len(head) == SNIFF_BYTES and "\n" in text:
        text = text[: text.rindex("\n")]  # drop a record cut in half by the sample boundary
    return text


def sniff_delimiter(sample: str) -> str:
    """Pick the delimiter that splits the sample into the most consistent number of fields."""
    best: tuple[float, int, str] = (0.0, 1, ",")
    for candidate in CANDIDATE_DELIMITERS:
        try:
            records = list(csv.reader(io.StringIO(sample), delimiter=candidate))[:200]
        except csv.Error:
            continue
        widths = [len(r) for r in records if r]
        if not widths:
            continue
        mode, hits = Counter(widths).most_common(1)[0]
        if mode < 2:
            continue
        consistency = hits / len(widths)
        if (consistency, mode) > best[:2]:
            best = (consistency, mode, candidate)
    return best[2]


def _dedupe(names: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    seen: Counter[str] = Counter()
    out: list[str] = []
    renames: dict[str, str] = {}
    for index, raw in enumerate(names):
        name = raw.strip() or f"column {index + 1}"
        seen[name] += 1
        if seen[name] > 1:
            new = f"{name} ({seen[name]})"
            renames[new] = name
            name = new
        out.append(name)
    return out, renames


def read_delimited(
    path: Path,
    head: bytes,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    columns: Sequence[str] | None = None,
    text_columns: Sequence[str] | None = None,
    sample_only: bool = False,
) -> RawTable:
    """CSV/TSV with sniffed encoding and delimiter."""
    explicit_encoding = encoding
    encoding = encoding or detect_encoding(path, head)
    sample = _decode_head(head, encoding)
    if not sample.strip():
        raise UnreadableSource(f"{path}: the file is empty. Export your sales data again.")
    delimiter = delimiter or sniff_delimiter(sample)
    try:
        header_row = next(csv.reader(io.StringIO(sample), delimiter=delimiter))
    except (csv.Error, StopIteration) as exc:
        raise UnreadableSource(f"{path}: the first line is not a header row ({exc}).") from exc
    names, renames = _dedupe(header_row)
    if len(names) < 2:
        raise UnreadableSource(
            f"{path}: found only one column. Is this a sales export with a header row? "
            "Columns must be separated by comma, semicolon, tab or |."
        )
    wanted = [n for n in (columns if columns is not None else names) if n in names]
    source: Path | io.BytesIO = path
    if sample_only and len(head) == SNIFF_BYTES and b"\n" in head:
        source = io.BytesIO(head[: head.rindex(b"\n") + 1])
    typed = text_columns is not None and not sample_only
    as_text = set(text_columns or ()) if typed else set(names)
    options = _CsvOptions(
        names,
        wanted,
        as_text,
        encoding,
        delimiter,
        quoted='"' in sample,
        # Arrow drops empty lines silently, which would shift every later row number; keeping
        # them as rows costs a slower parse, so only files that have them pay for it.
        keep_empty_lines=_has_empty_lines(source),
    )
    try:
        try:
            table, malformed, skipped = options.read(source, use_threads=True)
        except pa.ArrowInvalid:
            # Invalid UTF-8 after the head fails the read, and so does a malformed row holding
            # legacy bytes (Arrow cannot hand its text to the row handler): check every byte.
            legacy = options.encoding
            if explicit_encoding is None and options.encoding == "utf-8":
                legacy = detect_encoding(path, head, whole_file=True)
            if legacy != options.encoding:
                options = replace(options, encoding=legacy)
            elif typed:
                options = replace(options, as_text=set(names))  # a value Arrow could not type
            else:
                raise
            table, malformed, skipped = options.read(source, use_threads=True)
        if skipped:  # only a single-threaded read knows the line numbers of skipped rows
            table, malformed, skipped = options.read(source, use_threads=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError, LookupError) as exc:
        raise UnreadableSource(
            f"{path}: cannot read this as a {delimiter!r}-separated table ({exc}). "
            "Check that the file is a CSV/TSV export."
        ) from exc
    rows = _row_numbers(table.num_rows, [n for n in skipped if n is not None and n > 0])
    table, rows = _drop_blank_rows(table, rows)
    return RawTable(
        path=path,
        source_format="tsv" if delimiter == "\t" else "csv",
        table=table,
        row_numbers=rows,
        encoding=options.encoding,
        delimiter=delimiter,
        header_renames=renames,
        malformed_rows=malformed,
        complete=isinstance(source, Path),
    )


@dataclass(frozen=True)
class _CsvOptions:
    names: list[str]
    wanted: list[str]
    as_text: set[str]
    encoding: str
    delimiter: str
    quoted: bool
    keep_empty_lines: bool

    def read(
        self, source: Path | io.BytesIO, *, use_threads: bool
    ) -> tuple[pa.Table, list[MalformedRow], list[int | None]]:
        """The table, its malformed rows, and the numbers of all skipped rows.

        A whitespace-only line is skipped without a report, but later rows must still count it.
        """
        malformed: list[MalformedRow] = []
        skipped: list[int | None] = []

        def on_invalid(row: Any) -> str:
            skipped.append(row.number)
            if row.text.strip():
                malformed.append(
                    MalformedRow(row.number, row.expected_columns, row.actual_columns, row.text)
                )
            return "skip"

        if isinstance(source, io.BytesIO):
            source.seek(0)
        table = pa_csv.read_csv(
            source,
            read_options=pa_csv.ReadOptions(
                use_threads=use_threads,
                encoding=self.encoding,
                column_names=self.names,
                skip_rows=1,
                block_size=16 * 1024 * 1024,
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=self.delimiter,
                quote_char='"',
                double_quote=True,
                newlines_in_values=self.quoted,
                ignore_empty_lines=not self.keep_empty_lines,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={n: pa.string() for n in self.names if n in self.as_text},
                include_columns=self.wanted,
                null_values=NULL_TOKENS,
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                # Only ISO dates may be typed by Arrow: "05/03" must stay text for date order.
                timestamp_parsers=[pa_csv.ISO8601],
            ),
        )
        return table, malformed, skipped


def _has_empty_lines(source: Path | io.BytesIO) -> bool:
    if isinstance(source, io.BytesIO):
        data = source.getvalue()
        return b"\n\n" in data or b"\n\r\n" in data
    return has_empty_lines(source)


def _row_numbers(count: int, skipped: list[int]) -> np.ndarray:
    """Spreadsheet row of each record: header is row 1; skipped bad rows keep their numbers."""
    rows = np.arange(2, count + 2, dtype=np.int64)
    for line in sorted(skipped):
        rows[rows >= line] += 1
    return rows


def _drop_blank_rows(table: pa.Table, rows: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    if table.num_columns == 0 or table.num_rows == 0:
        return table, rows
    import pyarrow.compute as pc

    blank = None
    for column in table.columns:
        empty = pc.is_null(column)
        blank = empty if blank is None else pc.and_(blank, empty)
    if blank is None or not pc.any(blank).as_py():
        return table, rows
    keep = pc.invert(blank)
    return table.filter(keep), rows[np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)]


# --------------------------------------------------------------------------------------------
# Excel and Parquet


def _cell_text(value: Any) -> str | None:
    """Excel cells arrive typed; render them as the text a CSV export of the sheet would hold."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    text = str(value).strip()
    return text or None


def read_xlsx(path: Path, *, sheet: str | None = None) -> RawTable:
    """First non-empty sheet (or the named one); its first non-empty row is the header."""
    import zipfile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    # A file object, not the path: openpyxl refuses a path whose suffix is not .xlsx, and
    # exports are often misnamed (the format was detected from the magic bytes).
    handle = path.open("rb")
    try:
        workbook = load_workbook(handle, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, InvalidFileException) as exc:
        handle.close()
        raise UnreadableSource(
            f"{path}: not a readable Excel workbook ({exc}). Save it again as .xlsx or CSV."
        ) from exc
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            raise UnreadableSource(
                f"{path}: no sheet named {sheet!r}; the workbook has {workbook.sheetnames}."
            )
        names = [sheet] if sheet is not None else list(workbook.sheetnames)
        for sheet_name in names:
            raw = _read_sheet(workbook[sheet_name])
            if raw is not None:
                headers, renames, columns, rows = raw
                table = pa.table(
                    [pa.array(c, type=pa.string()) for c in columns], names=list(headers)
                )
                return RawTable(
                    path=path,
                    source_format="xlsx",
                    table=table,
                    row_numbers=np.asarray(rows, dtype=np.int64),
                    sheet=sheet_name,
                    header_renames=renames,
                )
    finally:
        workbook.close()
        handle.close()
    raise UnreadableSource(f"{path}: every sheet in this workbook is empty.")


def _read_sheet(
    worksheet: Any,
) -> tuple[list[str], dict[str, str], list[list[str | None]], list[int]] | None:
    headers: list[str] | None = None
    renames: dict[str, str] = {}
    columns: list[list[str | None]] = []
    rows: list[int] = []
    for row_number, values in enumerate(worksheet.iter_rows(values_only=True), start=1):
        cells = [_cell_text(v) for v in values]
        if headers is None:
            if any(cells):
                while cells and cells[-1] is None:
                    cells.pop()
                headers, renames = _dedupe(c or "" for c in cells)
                columns = [[] for _ in headers]
            continue
        if not any(cells):
            continue
        cells = (cells + [None] * len(headers))[: len(headers)]
        for column, cell in zip(columns, cells, strict=True):
            column.append(cell)
        rows.append(row_number)
    if headers is None:
        return None
    return headers, renames, columns, rows


def read_parquet(
    path: Path, *, columns: Sequence[str] | None = None, sample_only: bool = False
) -> RawTable:
    """Parquet keeps its types; parsers accept typed columns as they are."""
    try:
        parquet = pq.ParquetFile(path)
        schema_names = parquet.schema_arrow.names
        wanted = [c for c in columns if c in schema_names] if columns is not None else None
        if sample_only:
            batch = next(parquet.iter_batches(batch_size=2000, columns=wanted), None)
            table = (
                pa.Table.from_batches([batch])
                if batch is not None
                else parquet.schema_arrow.empty_table()
            )
        else:
            table = parquet.read(columns=wanted)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise UnreadableSource(f"{path}: not a readable Parquet file ({exc}).") from exc
    names, renames = _dedupe(table.column_names)
    table = table.rename_columns(names)
    return RawTable(
        path=path,
        source_format="parquet",
        table=table,
        row_numbers=np.arange(2, table.num_rows + 2, dtype=np.int64),
        header_renames=renames,
        complete=table.num_rows == parquet.metadata.num_rows,
    )
