"""Rows in and out of files: CSV, JSON Lines and Parquet, streamed.

Readers yield one :class:`Record` at a time with its line number (CSV: the physical
line where the record ends, the header being line 1; JSON Lines: the line; Parquet:
the row), so a file of any size is read in constant memory and a bad row can be
named. Encoders turn chunks of records into bytes as they come, so exports stream
too, Parquet included (one row group per chunk, the footer at the end).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

FORMATS = ("csv", "jsonl", "parquet")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
_SUFFIXES = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
PARQUET_BATCH = 1000


class FileFormatError(ValueError):
    """The file as a whole cannot be read (unknown format, no header, not Parquet ...)."""


def detect_format(path: str | Path, given: str | None = None) -> str:
    """The format named by ``given``, else by the file's suffix.

    >>> detect_format("history.jsonl"), detect_format("x.dat", "csv")
    ('jsonl', 'csv')
    """
    if given is not None:
        if given not in FORMATS:
            raise FileFormatError(f"unknown format {given!r}; expected one of {FORMATS}")
        return given
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise FileFormatError(
            f"cannot tell the format of {Path(path).name!r} from its suffix; name it .csv, "
            ".jsonl or .parquet, or pass --format"
        )
    return _SUFFIXES[suffix]


@dataclass
class Record:
    """One row of a file: its values, or why it could not be read.

    ``text`` is true for CSV, whose values are all strings (typed later against the
    task's schema).
    """

    line: int
    data: dict[str, Any] | None
    error: str | None = None
    text: bool = False


def where(fmt: str, line: int) -> str:
    """``line 12`` (CSV, JSON Lines) or ``row 12`` (Parquet)."""
    return f"{'row' if fmt == 'parquet' else 'line'} {line}"


def total_size(path: str | Path, fmt: str) -> int:
    """What progress counts to: bytes for text formats, rows for Parquet."""
    if fmt == "parquet":
        return int(_parquet_file(Path(path)).metadata.num_rows)
    return Path(path).stat().st_size


def read_records(
    path: str | Path, fmt: str, progress: Callable[[int], None] | None = None
) -> Iterator[Record]:
    """Stream the records of a file; ``progress`` gets the bytes (or rows) read so far."""
    if fmt == "csv":
        yield from _read_csv(Path(path), progress)
    elif fmt == "jsonl":
        yield from _read_jsonl(Path(path), progress)
    elif fmt == "parquet":
        yield from _read_parquet(Path(path), progress)
    else:
        raise FileFormatError(f"unknown format {fmt!r}")


def _read_csv(path: Path, progress: Callable[[int], None] | None) -> Iterator[Record]:
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.DictReader(text, restval=None)
        try:
            header = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as exc:
            raise FileFormatError(f"line 1: cannot read the CSV header ({exc})") from exc
        if not header:
            raise FileFormatError("the CSV file is empty: expected a header line")
        if len(set(header)) != len(header):
            raise FileFormatError("line 1: the CSV header names a column twice")
        count = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                yield Record(reader.line_num, None, f"cannot read this CSV line ({exc})")
                continue
            if None in row:
                yield Record(reader.line_num, None, "more values than the header has columns")
                continue
            if None in row.values():
                yield Record(reader.line_num, None, "fewer values than the header has columns")
                continue
            row = {key: _from_text_cell(cell) for key, cell in row.items()}
            yield Record(reader.line_num, row, text=True)
            count += 1
            if progress is not None and count % 1000 == 0:
                progress(raw.tell())
        if progress is not None:
            progress(raw.tell())


def _read_jsonl(path: Path, progress: Callable[[int], None] | None) -> Iterator[Record]:
    with open(path, "rb") as raw:
        for number, line in enumerate(raw, start=1):
            if progress is not None and number % 1000 == 0:
                progress(raw.tell())
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:  # UnicodeDecodeError is a ValueError too
                yield Record(number, None, f"not valid JSON ({exc})")
                continue
            if not isinstance(data, dict):
                yield Record(number, None, "expected a JSON object")
                continue
            yield Record(number, data)
        if progress is not None:
            progress(raw.tell())


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own errors for a file that is not Parquet
        raise FileFormatError(f"cannot read {path.name} as Parquet ({exc})") from exc


def _read_parquet(path: Path, progress: Callable[[int], None] | None) -> Iterator[Record]:
    parquet = _parquet_file(path)
    number = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH):
        for row in batch.to_pylist():
            number += 1
            yield Record(number, row)
        if progress is not None:
            progress(number)


# --- writing ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """An export column: its name, its kind, and where its value sits in a record.

    Kinds: ``str``, ``float``, ``int``, ``bool``, ``time`` (epoch seconds in records;
    ISO 8601 in text, a UTC timestamp in Parquet) and ``json`` (lists and objects; a
    JSON string in CSV and Parquet).
    """

    name: str
    kind: str
    path: tuple[str, ...]

    def get(self, record: dict[str, Any]) -> Any:
        value: Any = record
        for key in self.path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _text(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "time":
        return iso(value) or ""
    if kind == "json" or isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


class Encoder:
    """Turns chunks of records into bytes; :meth:`finish` ends the file."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = list(columns)

    def chunk(self, records: Sequence[dict[str, Any]]) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""


# A spreadsheet runs a cell that begins with one of these as a formula (CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# after a leading apostrophe, these mean the apostrophe is ours (see _from_text_cell)
_ESCAPED_START = (*_FORMULA_START, "'")


def _as_text_cell(value: str) -> str:
    """Text a spreadsheet shows as text: a leading apostrophe before a formula's first
    character (OWASP's advice for CSV files), whoever wrote the value. Text that already
    starts with an apostrophe before such a character (or another apostrophe) gets one
    more, so that :func:`_from_text_cell` reads every value back as it was.

    >>> print(_as_text_cell('=HYPERLINK("http://x")'), _as_text_cell("-5"), _as_text_cell("a=b"))
    '=HYPERLINK("http://x") '-5 a=b
    >>> print(_as_text_cell("'=x"), _as_text_cell("'quoted"), _as_text_cell("'"))
    ''=x 'quoted '
    """
    escape = value.startswith(_FORMULA_START) or (
        value.startswith("'") and value[1:2].startswith(_ESCAPED_START)
    )
    return "'" + value if escape else value


def _from_text_cell(cell: str) -> str:
    """A CSV cell as it was before :func:`_as_text_cell`: one leading apostrophe before a
    formula's first character, or before another apostrophe, is taken off.

    >>> [_from_text_cell(_as_text_cell(v)) for v in ("=x", "'=x", "''", "'a", "'", "-")]
    ['=x', "'=x", "''", "'a", "'", '-']
    """
    escaped = cell.startswith("'") and cell[1:2].startswith(_ESCAPED_START)
    return cell[1:] if escaped else cell


class CsvEncoder(Encoder):
    """One flat column per :class:`Column` (``features.amount``), a header first; text
    that a spreadsheet would run as a formula is written as text (:func:`_as_text_cell`)."""

    def __init__(self, columns: Sequence[Column]) -> None:
        super().__init__(columns)
        self._started = False

    def chunk(self, records: Sequence[dict[str, Any]]) -> bytes:
        out = io.StringIO()
        # CRLF, as RFC 4180 says: the writer quotes a field holding any character of the line
        # end, and a lone CR is a line end to CSV readers
        writer = csv.writer(out, lineterminator="\r\n")
        if not self._started:
            writer.writerow([c.name for c in self.columns])
            self._started = True
        for record in records:
            row = []
            for column in self.columns:
                value = column.get(record)
                text = _text(value, column.kind)
                row.append(_as_text_cell(text) if isinstance(value, str) else text)
            writer.writerow(row)
        return out.getvalue().encode()

    def finish(self) -> bytes:
        return b"" if self._started else self.chunk([])


class JsonlEncoder(Encoder):
    """One JSON object per line, nested as the API shows it (``features`` an object)."""

    def __init__(self, columns: Sequence[Column]) -> None:
        super().__init__(columns)
        self._times = [c.name for c in self.columns if c.kind == "time" and len(c.path) == 1]

    def chunk(self, records: Sequence[dict[str, Any]]) -> bytes:
        lines = []
        for record in records:
            if self._times:
                record = {**record, **{k: iso(record.get(k)) for k in self._times}}
            lines.append(json.dumps(record, separators=(",", ":"), allow_nan=False))
        return ("\n".join(lines) + "\n").encode() if lines else b""


class _Sink(io.RawIOBase):
    """A write-only file that hands over what was written so far."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        out, self._chunks = b"".join(self._chunks), []
        return out


class ParquetEncoder(Encoder):
    """Typed columns, one row group per chunk, written as they come."""

    def __init__(self, columns: Sequence[Column]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        super().__init__(columns)
        types = {
            "str": pa.string(),
            "float": pa.float64(),
            "int": pa.int64(),
            "bool": pa.bool_(),
            "time": pa.timestamp("us", tz="UTC"),
            "json": pa.string(),
        }
        self._pa = pa
        self.schema = pa.schema([(c.name, types[c.kind]) for c in self.columns])
        self._sink = _Sink()
        self._writer = pq.ParquetWriter(self._sink, self.schema)

    def _value(self, value: Any, kind: str) -> Any:
        if value is None:
            return None
        if kind == "time":
            return datetime.fromtimestamp(value, UTC)
        if kind == "json":
            return json.dumps(value, separators=(",", ":"))
        if kind == "float":
            return float(value)
        if kind == "str" and not isinstance(value, str):
            return str(value)
        return value

    def chunk(self, records: Sequence[dict[str, Any]]) -> bytes:
        if records:
            arrays = [
                self._pa.array([self._value(c.get(r), c.kind) for r in records], type=t.type)
                for c, t in zip(self.columns, self.schema, strict=True)
            ]
            self._writer.write_table(self._pa.Table.from_arrays(arrays, schema=self.schema))
        return self._sink.take()

    def finish(self) -> bytes:
        self._writer.close()
        return self._sink.take()


ENCODERS: dict[str, type[Encoder]] = {
    "csv": CsvEncoder,
    "jsonl": JsonlEncoder,
    "parquet": ParquetEncoder,
}


def encode(
    fmt: str, columns: Sequence[Column], chunks: Iterable[Sequence[dict[str, Any]]]
) -> Iterator[bytes]:
    """The bytes of a file of ``fmt``, chunk by chunk."""
    encoder = ENCODERS[fmt](columns)
    for records in chunks:
        data = encoder.chunk(records)
        if data:
            yield data
    tail = encoder.finish()
    if tail:
        yield tail


def write_file(out: IO[bytes], fmt: str, columns: Sequence[Column], chunks: Iterable) -> int:
    """Write a whole export to a binary file object; returns the records written."""
    count = 0

    def counted() -> Iterator[Sequence[dict[str, Any]]]:
        nonlocal count
        for records in chunks:
            count += len(records)
            yield records

    for data in encode(fmt, columns, counted()):
        out.write(data)
    return count
