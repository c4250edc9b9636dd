"""Espay batch files: read an uploaded CSV/XLSX into validated lines; write the templates.

No database here: `parse_upload()` turns bytes into `ParsedUpload` (lines + every problem by row
and column); the database side lives in `arbook.services.espay_batch`, and result exports go
through the shared `arbook.exports` (streamed, formula injection neutralized).

Decisions where Espay's documents are silent:
- Attribute sizes of the line fields (Espay documents only the request envelope): doc_no ANS 50,
  member_code ANS 50, member_name ANS 100, description ANS 255, amounts at most 15 digits before
  the decimal point, number_of_installment N 3 (1-999), billing_date N 2 (01-31).
- Amounts: plain digits with an optional decimal point. Thousands separators are refused rather
  than guessed ("150.000" is 150 thousand in Indonesian notation and 150 in English); IDR amounts
  must be whole. A float from an XLSX cell is read through its shortest decimal text.
- Limits: 5 MB, 10,000 data rows, .csv/.txt/.xlsx; the content decides the format (a renamed
  binary is refused by what it is, not by its name). The sheet may be at most 50 columns wide and
  11,000 rows tall (blank rows included); an XLSX is measured before openpyxl parses any of it
  (declared `<dimension>`, cell references, markup and shared-string counts; see `_scan_xlsx`), so
  a hostile file (16,384 columns, a million rows or strings in a few MB) is refused in milliseconds
  instead of holding a web worker for tens of seconds. CSV encodings: UTF-8 (with or without BOM),
  UTF-16 with BOM (Excel's "Unicode text"), else Windows-1252, else Latin-1; delimiter `,`, `;`
  or tab, whichever yields the known columns.
- Row numbers are the sheet's own (header = row 1, blank rows counted), so a user can find them.
"""
from __future__ import annotations

import codecs
import csv
import io
import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from arbook.exports import csv_chunks
from gateways.numbers import NotANumber, parse_decimal

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_ROWS = 10_000
#: An XLSX is a zip: refuse one that inflates beyond this (a "zip bomb" would exhaust memory).
MAX_XLSX_UNCOMPRESSED = 120 * 1024 * 1024
#: The template has 10 columns; extra ones are ignored, but a sheet wider than this is refused.
MAX_COLUMNS = 50
#: Header + MAX_ROWS + room for blank and note rows; a taller sheet (blank rows included) is refused.
MAX_SHEET_ROWS = MAX_ROWS + 1_000
#: Work bounds for an XLSX, checked on the unpacked XML before openpyxl parses it (openpyxl spends
#: ~10-20 µs per element): markup (`<` characters, about two per element, in every part; 10,000
#: template rows need ~600,000) and entries of the shared-string table (~17 µs each at load).
MAX_XLSX_MARKUP = 1_000_000
MAX_SHARED_STRINGS = 100_000
CHUNK_SIZE = 500  # Espay's maximum invoices per sendinvoice call
ALLOWED_EXTENSIONS = (".csv", ".txt", ".xlsx")
MAX_AMOUNT_DIGITS = 15
MAX_PROBLEMS = 5_000  # beyond this the file is clearly the wrong one; the rest is summarized


@dataclass(frozen=True)
class Column:
    name: str
    mandatory: bool
    kind: str  # "text", "amount", "count", "day"
    max_length: int
    help: str
    example: str
    aliases: tuple[str, ...] = ()


#: The documented columns, in the documented order (espay-send-invoice.txt).
COLUMNS: tuple[Column, ...] = (
    Column("doc_no", True, "text", 50, "Your invoice number; Espay's key for the invoice. Unique.", "EXAMPLE-0001"),
    Column("member_code", True, "text", 50, "Your customer's code.", "CUST-0001"),
    Column("member_name", False, "text", 100, "Customer name.", "PT Contoh Sejahtera"),
    Column("amount", True, "amount", MAX_AMOUNT_DIGITS, "Amount of this bill.", "150000"),
    Column("total_amount", True, "amount", MAX_AMOUNT_DIGITS, "Total amount.", "150000"),
    Column("number_of_installment", True, "count", 3, "Number of installments (1 when paid at once).", "1",
           ("jumlah_cicilan",)),
    Column("installment_amount", True, "amount", MAX_AMOUNT_DIGITS, "Amount per installment.", "150000",
           ("amount_cicilan",)),
    Column("balance_payment_amount", False, "amount", MAX_AMOUNT_DIGITS, "Settlement (balance) amount.", "",
           ("pelunasan_amount",)),
    Column("description", False, "text", 255, "Shown with the VA (e.g. what the bill is for).",
           "Invoice October 2026"),
    Column("billing_date", True, "day", 2, "When the bill falls due each month.", "05",
           ("tanggal_penagihan",)),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
BY_NAME = {c.name: c for c in COLUMNS}
EXAMPLE_DOC_NO = COLUMNS[0].example

#: Bank Indonesia clearing codes -> names (RESEARCH A6), for headers and pages.
BANK_NAMES = {
    "002": "BRI", "008": "Mandiri", "009": "BNI", "011": "Danamon", "013": "Permata", "014": "BCA",
    "016": "Maybank", "022": "CIMB Niaga", "028": "OCBC NISP", "147": "Muamalat", "200": "BTN", "451": "BSI",
}


def bank_label(code: str) -> str:
    name = BANK_NAMES.get(code)
    return f"{name} ({code})" if name else f"Bank {code}"


def normalize_header(text: Any) -> str:
    """`Doc No`, `DOC_NO`, ` doc-no ` -> `docno`: case, spaces, `_`, `-` and `.` do not matter."""
    return re.sub(r"[\s_\-.]+", "", str(text or "").replace("\ufeff", "")).lower()


_HEADER_LOOKUP: dict[str, str] = {}
for _c in COLUMNS:
    for _name in (_c.name, *_c.aliases):
        _HEADER_LOOKUP[normalize_header(_name)] = _c.name


class UploadError(ValueError):
    """The file as a whole cannot be read (type, size, encoding, columns, row count)."""


@dataclass(frozen=True)
class Problem:
    row: int  # sheet row; 1 = the header
    column: str  # column name, "" for a problem of the whole row
    value: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "value": self.value, "message": self.message}


@dataclass
class ParsedLine:
    row_number: int
    doc_no: str
    member_code: str
    member_name: str
    amount: Decimal
    total_amount: Decimal
    number_of_installment: int
    installment_amount: Decimal
    balance_payment_amount: Decimal | None
    description: str
    billing_date: str


@dataclass
class ParsedUpload:
    kind: str  # csv / xlsx
    lines: list[ParsedLine]
    problems: list[Problem]
    notes: list[str] = field(default_factory=list)
    encoding: str = ""
    delimiter: str = ""
    row_count: int = 0  # data rows read (valid or not)
    problem_count: int = 0  # may exceed len(problems) when capped


# -- reading the container -------------------------------------------------------------------

_BINARY_MAGIC = {
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x1f\x8b": "a gzip archive",
    b"Rar!": "a RAR archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
    b"MZ": "a Windows program",
    b"\x7fELF": "a program",
}


def _check_name(file_name: str) -> None:
    lowered = (file_name or "").lower()
    if lowered.endswith((".xls", ".xlsb")):
        raise UploadError("Old Excel workbooks (.xls/.xlsb) cannot be read; in Excel choose "
                          "File → Save As → Excel Workbook (.xlsx) or CSV, and upload that.")
    if not lowered.endswith(ALLOWED_EXTENSIONS):
        raise UploadError("Upload a .csv or .xlsx file (the templates on this page show the columns).")


_TOO_WIDE = (f"at most {MAX_COLUMNS} columns (up to column {{last}}) are read, and the template has "
             f"{len(COLUMNS)}. Delete the columns to the right of your data (or clear their formatting), "
             "or upload a CSV.")
_TOO_TALL = (f"at most {MAX_SHEET_ROWS:,} rows (blank ones included) are read, for at most {MAX_ROWS:,} "
             "invoices per batch. Delete the empty rows below your data, or split the file.")
#: A cell reference beyond column AX (the 50th): three letters, B?-Z?, AY or AZ.
_WIDE_REF = re.compile(rb'\sr="((?:[A-Z]{3}|[B-Z][A-Z]|A[YZ])[0-9]+)"')
assert MAX_COLUMNS == 50, "_WIDE_REF encodes column AX"
_SCAN_CHUNK = 1 << 20
_REL_WORKSHEET = "/worksheet"


def _first_sheet_part(archive: zipfile.ZipFile, names: set[str]) -> str | None:
    """The part openpyxl reads as `worksheets[0]` (first `<sheet>` of xl/workbook.xml whose
    relationship is a worksheet), or None when the small index parts are odd (then the other
    bounds still hold)."""
    rels_name = "xl/_rels/workbook.xml.rels"
    try:
        if rels_name not in names or any(archive.getinfo(n).file_size > 2 * 1024 * 1024
                                         for n in ("xl/workbook.xml", rels_name)):
            return None
        targets = {}
        for rel in ET.fromstring(archive.read(rels_name)):
            if rel.get("Type", "").endswith(_REL_WORKSHEET):
                target = rel.get("Target", "")
                targets[rel.get("Id")] = (target.lstrip("/") if target.startswith("/")
                                          else posixpath.normpath(posixpath.join("xl", target)))
        for element in ET.fromstring(archive.read("xl/workbook.xml")).iter():
            if element.tag.rsplit("}", 1)[-1] == "sheet":
                rel_id = next((v for k, v in element.attrib.items() if k.rsplit("}", 1)[-1] == "id"), None)
                if rel_id in targets:
                    return targets[rel_id]
    except (ET.ParseError, KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None
    return None


def _scan_xlsx(archive: zipfile.ZipFile, first_sheet: str | None) -> None:
    """Refuse a workbook that would cost openpyxl far more than a full batch does, reading only
    its unpacked bytes in 1 MB steps (C-speed counts and searches, stopping at the first excess).

    openpyxl parses the shared strings, the styles and a dimension-less sheet's whole XML already
    in `load_workbook`, so this runs before it. Every part counts (other sheets too: only the first
    is read, and the message says to upload that one)."""
    markup = strings = 0
    for info in archive.infolist():
        if info.is_dir():
            continue
        tail = b""
        with archive.open(info) as part:
            while chunk := part.read(_SCAN_CHUNK):
                markup += chunk.count(b"<")
                strings += chunk.count(b"<si>") + chunk.count(b"<si ")
                if info.filename == first_sheet:
                    wide = _WIDE_REF.search(tail + chunk)
                    if wide:
                        raise UploadError(f"The sheet has cells beyond column {_letter(MAX_COLUMNS - 1)} "
                                          f"(e.g. {wide.group(1).decode()}); "
                                          + _TOO_WIDE.format(last=_letter(MAX_COLUMNS - 1)))
                    tail = chunk[-24:]
                if strings > MAX_SHARED_STRINGS:
                    raise UploadError(f"The workbook's text table holds more than {MAX_SHARED_STRINGS:,} "
                                      f"entries, far more than {MAX_ROWS:,} invoices need (other sheets count "
                                      "too). Upload a workbook with only the invoice sheet, or a CSV.")
                if markup > MAX_XLSX_MARKUP:
                    raise UploadError(f"The workbook holds far more cells than {MAX_ROWS:,} rows of the "
                                      f"template's {len(COLUMNS)} columns need (other sheets count too). Upload "
                                      "only the invoice sheet with its Espay columns, or a CSV.")


def _rows_xlsx(content: bytes) -> Iterator[tuple[Any, ...]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        inflated = sum(info.file_size for info in archive.infolist())
        names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise UploadError("The file looks like an XLSX workbook but is damaged and cannot be opened. "
                          "Save it again from Excel, or export it as CSV.") from None
    if inflated > MAX_XLSX_UNCOMPRESSED:
        raise UploadError("The workbook unpacks to more than 120 MB; that is far more than 10,000 rows. "
                          "Upload only the invoice sheet.")
    if "xl/workbook.xml" not in names:
        raise UploadError("The file is a zip archive, not an Excel workbook (.xlsx). Upload a .csv or .xlsx file.")
    try:
        _scan_xlsx(archive, _first_sheet_part(archive, names))
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError):  # bad CRC, truncated, encrypted
        raise UploadError("The XLSX workbook is damaged and cannot be opened. Save it again from Excel, "
                          "or export it as CSV.") from None
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many kinds (KeyError, InvalidFileException, XML errors) on damage
        raise UploadError("The XLSX workbook is damaged and cannot be opened. Save it again from Excel, "
                          "or export it as CSV.") from None
    try:
        sheet = workbook.worksheets[0] if workbook.worksheets else None
        if sheet is None:
            raise UploadError("The workbook has no worksheet.")
        # The sheet's declared size (its <dimension>), when it has one: refuse before reading cells.
        if (sheet.max_column or 0) > MAX_COLUMNS:
            raise UploadError(f"The sheet is {sheet.max_column:,} columns wide (to column {_letter(sheet.max_column - 1)}); "
                              + _TOO_WIDE.format(last=_letter(MAX_COLUMNS - 1)))
        if (sheet.max_row or 0) > MAX_SHEET_ROWS:
            raise UploadError(f"The sheet is {sheet.max_row:,} rows tall; "
                              + _TOO_TALL)
        try:
            # Explicit bounds: openpyxl pads every row to the declared width and fills skipped row
            # numbers with empty rows; a missing or lying <dimension> must not make either unbounded.
            yield from sheet.iter_rows(max_col=MAX_COLUMNS, max_row=MAX_SHEET_ROWS + 1, values_only=True)
        except UploadError:
            raise
        except Exception:
            raise UploadError("The XLSX workbook is damaged (a sheet cannot be read). Save it again from "
                              "Excel, or export it as CSV.") from None
    finally:
        workbook.close()


def _bounded(rows: Iterable[Sequence[Any]]) -> Iterator[Sequence[Any]]:
    """Rows of either format, refused past MAX_SHEET_ROWS rows or MAX_COLUMNS filled columns."""
    for number, cells in enumerate(rows, start=1):
        if number > MAX_SHEET_ROWS:
            raise UploadError(f"The file has more than {MAX_SHEET_ROWS:,} rows; " + _TOO_TALL)
        if len(cells) > MAX_COLUMNS:
            if any(cells[MAX_COLUMNS:]):
                raise UploadError(f"Row {number} has {len(cells):,} columns; "
                                  + _TOO_WIDE.format(last=_letter(MAX_COLUMNS - 1)))
            cells = cells[:MAX_COLUMNS]
        yield cells


def _decode(content: bytes) -> tuple[str, str]:
    """Bytes -> (text, encoding name). Excel writes UTF-8 with a BOM, UTF-16 ("Unicode text"),
    or the Windows code page (1252 in Western/Indonesian locales)."""
    if content.startswith(codecs.BOM_UTF8):
        return content[len(codecs.BOM_UTF8):].decode("utf-8", errors="replace"), "UTF-8 (BOM)"
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return content.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError:
            raise UploadError("The file says it is UTF-16 text but cannot be decoded as such.") from None
    for magic, what in _BINARY_MAGIC.items():
        if content.startswith(magic):
            raise UploadError(f"The file is {what}, not a spreadsheet. Upload a .csv or .xlsx file.")
    if content.startswith(b"\xd0\xcf\x11\xe0"):
        raise UploadError("The file is an old Excel workbook (.xls) or another Office document. In Excel "
                          "choose File → Save As → Excel Workbook (.xlsx) or CSV, and upload that.")
    if b"\x00" in content[:65536]:
        raise UploadError("The file is binary, not a CSV text file. Upload a .csv or .xlsx file.")
    try:
        return content.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return content.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        return content.decode("latin-1"), "Latin-1"


def _looks_binary(text: str) -> bool:
    sample = text[:8192]
    if not sample:
        return False
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\r\n\t")
    return controls / len(sample) > 0.02


def _pick_delimiter(text: str) -> str:
    """The delimiter under which the first non-blank line names the most known columns."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    best, best_hits = ",", -1
    for delimiter in (",", ";", "\t", "|"):
        try:
            cells = next(csv.reader([first], delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        hits = sum(1 for c in cells if normalize_header(c) in _HEADER_LOOKUP)
        if hits > best_hits:
            best, best_hits = delimiter, hits
    return best


def _rows_csv(content: bytes) -> tuple[Iterator[list[str]], str, str]:
    text, encoding = _decode(content)
    if _looks_binary(text):
        raise UploadError("The file is binary, not a CSV text file. Upload a .csv or .xlsx file.")
    delimiter = _pick_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)

    def rows() -> Iterator[list[str]]:
        try:
            yield from reader
        except csv.Error as exc:
            raise UploadError(f"The CSV file cannot be read near line {reader.line_num}: {exc}.") from None

    return rows(), encoding, delimiter


# -- cell values ---------------------------------------------------------------------------------

def _text(value: Any) -> str:
    """A cell as text: numbers without a spurious `.0`, strings stripped."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)  # shortest text that round-trips: 0.1 -> "0.1"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value).strip()


_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_COMMA_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")  # 1,500,000 / 1,500.50
_DOT_THOUSANDS = re.compile(r"^\d{1,3}(\.\d{3})+(,\d+)?$")  # 1.500.000 / 150.000 / 1.500,50
_DECIMAL_COMMA = re.compile(r"^\d+,\d{1,2}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _amount(raw: Any, text: str, *, whole: bool) -> tuple[Decimal | None, str]:
    """(value, problem). A float cell is taken at its shortest decimal text (never binary-exact).

    Separators are refused, never guessed: "150.000" is 150 thousand in Indonesian notation and
    150 in English, and a wrong guess would bill a customer a thousand times too much or too little.
    """
    if isinstance(raw, (bool, int, float)):
        try:
            number = parse_decimal(raw)
        except NotANumber:
            return None, "is not a number"
    else:
        cleaned = text.replace(" ", "").replace("\u00a0", "")
        if cleaned.lower().startswith(("rp", "idr")):
            return None, "has a currency sign; write the plain number (e.g. 150000)"
        if _DOT_THOUSANDS.match(cleaned) and not _DECIMAL_COMMA.match(cleaned):
            if re.fullmatch(r"\d{1,3}\.\d{3}", cleaned):
                return None, "is ambiguous (thousands separator or decimals?); write the plain number (e.g. 150000)"
            return None, "has thousands separators; write the plain number (e.g. 150000)"
        if _COMMA_THOUSANDS.match(cleaned):
            return None, "has thousands separators; write the plain number (e.g. 150000)"
        if _DECIMAL_COMMA.match(cleaned):
            return None, "uses a decimal comma; write the plain number with a dot for decimals"
        if not _PLAIN_NUMBER.match(cleaned):
            return None, "is not a number"
        try:
            number = parse_decimal(cleaned)
        except NotANumber:
            return None, "is not a number"
    if number is None or not number.is_finite():
        return None, "is not a number"
    if number <= 0:
        return None, "must be more than 0"
    if whole and number != number.to_integral_value():
        return None, "must be whole rupiah (IDR has no decimals)"
    if not whole and number.as_tuple().exponent < -2:
        return None, "has more than 2 decimals"
    if len(str(int(number))) > MAX_AMOUNT_DIGITS:
        return None, f"is too large (at most {MAX_AMOUNT_DIGITS} digits)"
    return (number.quantize(Decimal(1)) if whole else number), ""


def _count(raw: Any, text: str) -> tuple[int | None, str]:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif re.fullmatch(r"[+-]?\d+", text):
        value = int(text)
    elif _PLAIN_NUMBER.match(text):
        return None, "must be a whole number"
    else:
        return None, "is not a number"
    if value <= 0:
        return None, "must be more than 0"
    if value > 999:
        return None, "is too large (at most 999, 3 digits)"
    return value, ""


def _day(raw: Any, text: str) -> tuple[str | None, str]:
    if isinstance(raw, (datetime, date)):
        return None, "is a date; enter only the day of the month (01-31)"
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool):
        text = str(raw)
    if not re.fullmatch(r"\d{1,2}", text) or not 1 <= int(text) <= 31:
        return None, "must be a day of the month, 01-31"
    return f"{int(text):02d}", ""


# -- the parser ----------------------------------------------------------------------------------

def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_upload(*, content: bytes, file_name: str, currency: str = "IDR") -> ParsedUpload:
    """Read and validate an upload. File-level trouble raises `UploadError`; row-level problems
    are all collected (row, column, value, reason) so the user can fix everything in one go."""
    if not content:
        raise UploadError("The file is empty.")
    if len(content) > MAX_FILE_BYTES:
        raise UploadError(f"The file is {len(content) / 1024 / 1024:.1f} MB; the limit is "
                          f"{MAX_FILE_BYTES // 1024 // 1024} MB (about {MAX_ROWS:,} rows). Split it into smaller files.")
    _check_name(file_name)
    encoding = delimiter = ""
    if content.startswith(b"PK\x03\x04") or content.startswith(b"PK\x05\x06"):
        kind = "xlsx"
        rows: Iterable[Sequence[Any]] = _rows_xlsx(content)
    else:
        kind = "csv"
        rows, encoding, delimiter = _rows_csv(content)
    whole = currency.upper() == "IDR"

    iterator = iter(_bounded(rows))
    header_row = 0
    header: Sequence[Any] = ()
    for number, cells in enumerate(iterator, start=1):
        if any(_text(c) for c in cells):
            header_row, header = number, cells
            break
    if not header_row:
        raise UploadError("The file has no rows. Start from one of the templates on this page.")

    positions: dict[str, int] = {}
    notes: list[str] = []
    for index, cell in enumerate(header):
        label = _text(cell)
        if not label:
            continue
        name = _HEADER_LOOKUP.get(normalize_header(label))
        if name is None:
            notes.append(f"Column “{_cut(label, 40)}” is not an Espay field and was ignored.")
            continue
        if name in positions:
            raise UploadError(f"Two columns are both “{name}” (columns {positions[name] + 1} and {index + 1}); "
                              "keep one of them.")
        positions[name] = index
    missing = [c.name for c in COLUMNS if c.mandatory and c.name not in positions]
    if missing:
        found = ", ".join(_cut(_text(c), 30) for c in header if _text(c)) or "none"
        raise UploadError(
            f"Row {header_row} must name the columns; missing: {', '.join(missing)}. Columns found: {found}. "
            "Names may differ in upper/lower case and spaces (e.g. “Doc No”); the templates show them all."
        )

    problems: list[Problem] = []
    problem_count = 0
    lines: list[ParsedLine] = []
    seen: dict[str, int] = {}
    data_rows = 0
    ordered = [(c, positions[c.name]) for c in COLUMNS if c.name in positions]

    def add(row: int, column: str, value: str, message: str) -> None:
        nonlocal problem_count
        problem_count += 1
        if len(problems) < MAX_PROBLEMS:
            problems.append(Problem(row, column, _cut(value), message))

    for number, cells in enumerate(iterator, start=header_row + 1):
        raws = {c.name: (cells[i] if i < len(cells) else None) for c, i in ordered}
        texts = {name: _text(raw) for name, raw in raws.items()}
        if not any(texts.values()):
            if not any(_text(c) for c in cells):
                continue  # a blank row (Excel leaves many at the end)
        data_rows += 1
        if data_rows > MAX_ROWS:
            raise UploadError(f"The file has more than {MAX_ROWS:,} rows; the limit is {MAX_ROWS:,} per batch. "
                              "Split it into several files.")
        values: dict[str, Any] = {}
        row_ok = True
        for column, _index in ordered:
            raw, text = raws[column.name], texts[column.name]
            if text == "":
                if column.mandatory:
                    add(number, column.name, "", "is mandatory but empty")
                    row_ok = False
                values[column.name] = None if column.kind == "amount" else ""
                continue
            problem = ""
            if column.kind == "text":
                if _CONTROL.search(text) or "\n" in text or "\r" in text:
                    problem = "contains a line break or control character"
                elif len(text) > column.max_length:
                    problem = f"is {len(text)} characters long; at most {column.max_length}"
                value: Any = text
            elif column.kind == "amount":
                value, problem = _amount(raw, text, whole=whole)
            elif column.kind == "count":
                value, problem = _count(raw, text)
            else:
                value, problem = _day(raw, text)
            if problem:
                add(number, column.name, text, problem)
                row_ok = False
            values[column.name] = value
        doc_no = values.get("doc_no") or ""
        if doc_no:
            if doc_no == EXAMPLE_DOC_NO:
                add(number, "doc_no", doc_no, "is the template's example row; delete it")
                row_ok = False
            elif doc_no in seen:
                add(number, "doc_no", doc_no, f"appears twice in the file (also on row {seen[doc_no]})")
                row_ok = False
            else:
                seen[doc_no] = number
        if row_ok:
            lines.append(ParsedLine(
                row_number=number, doc_no=doc_no, member_code=values["member_code"],
                member_name=values.get("member_name") or "", amount=values["amount"],
                total_amount=values["total_amount"], number_of_installment=values["number_of_installment"],
                installment_amount=values["installment_amount"],
                balance_payment_amount=values.get("balance_payment_amount"),
                description=values.get("description") or "", billing_date=values["billing_date"],
            ))
    if data_rows == 0:
        raise UploadError("The file has a header row but no invoice rows.")
    return ParsedUpload(kind=kind, lines=lines, problems=problems, notes=notes, encoding=encoding,
                        delimiter={"\t": "tab"}.get(delimiter, delimiter), row_count=data_rows,
                        problem_count=problem_count)


# -- writing: templates and exports --------------------------------------------------------------

def _letter(index: int) -> str:
    # openpyxl loads only when a message or the template needs it (a heavy import for a letter).
    from openpyxl.utils import get_column_letter

    return get_column_letter(index + 1)


def template_rows() -> tuple[list[str], list[list[Any]]]:
    header = list(COLUMN_NAMES)
    example = [c.example for c in COLUMNS]
    return header, [example]


def template_csv() -> bytes:
    """The template as CSV (UTF-8 with a BOM, so Excel opens it with the right encoding)."""
    header, rows = template_rows()
    return b"".join(csv_chunks(rows, header))


def template_xlsx() -> bytes:
    """The template: the columns (doc_no, member_code and billing_date formatted as text so Excel
    keeps leading zeros), one example row, and a second sheet describing each column."""
    # openpyxl loads when the template is asked for, not with every page that imports this module.
    from openpyxl import Workbook
    from openpyxl.styles import Font

    header, rows = template_rows()
    workbook = Workbook()
    ws = workbook.active
    ws.title = "invoices"
    ws.append(header)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    text_columns = {"doc_no", "member_code", "member_name", "description", "billing_date"}
    for row in rows:
        ws.append([int(v) if c.kind in ("amount", "count") and v else v for c, v in zip(COLUMNS, row)])
    for index, column in enumerate(COLUMNS):
        letter = _letter(index)
        ws.column_dimensions[letter].width = max(14, len(column.name) + 4)
        if column.name in text_columns:
            for r in range(2, 1002):
                ws[f"{letter}{r}"].number_format = "@"
    help_sheet = workbook.create_sheet("columns")
    help_sheet.append(["column", "mandatory", "format", "max", "meaning"])
    for cell in help_sheet[1]:
        cell.font = Font(bold=True)
    formats = {"text": "text", "amount": "number > 0 (IDR: whole rupiah, no separators)",
               "count": "whole number > 0", "day": "day of month 01-31"}
    for column in COLUMNS:
        limit = f"{column.max_length} characters" if column.kind == "text" else (
            f"{column.max_length} digits")
        help_sheet.append([column.name, "yes" if column.mandatory else "no", formats[column.kind], limit, column.help])
    help_sheet.append([])
    help_sheet.append([f"Delete the example row ({EXAMPLE_DOC_NO}) before uploading. At most {MAX_ROWS:,} rows "
                       f"and {MAX_FILE_BYTES // 1024 // 1024} MB per file; only the first sheet is read."])
    help_sheet.column_dimensions["E"].width = 60
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
