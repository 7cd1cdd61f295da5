"""CSV files people open in spreadsheets: cells that cannot run as formulas.

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``,
``-`` or ``@`` as a formula (and some also after a tab or a carriage return),
so a file named ``=cmd|'calc'!A0.dcm`` or a PatientID ``=HYPERLINK(...)``
would become a live formula in ``report.csv`` (CWE-1236, "CSV injection").
Every CSV medlung writes goes through :func:`spreadsheet_cell`, which puts a
single quote before such a text (the escape OWASP recommends; spreadsheets
show the text as written); numbers, including negative ones, stay numbers.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence

#: First characters that make a spreadsheet read a cell as a formula (OWASP "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def spreadsheet_cell(value: object) -> object:
    """``value`` made safe for a spreadsheet: a text that would run as a formula gets a leading ``'``.

    Parameters
    ----------
    value : object
        A cell value; only ``str`` values are changed.

    Returns
    -------
    object
        ``value``, or ``"'" + value`` for a text that starts with one of
        :data:`FORMULA_STARTS` and is not a plain number (``-1.5`` stays).

    Examples
    --------
    >>> spreadsheet_cell("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> spreadsheet_cell("-0.25"), spreadsheet_cell(-3)
    ('-0.25', -3)
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.match(value):
        return "'" + value
    return value


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, object]], value=lambda v: v) -> str:
    """CSV text (header, then one line per row) with every cell through :func:`spreadsheet_cell`.

    Parameters
    ----------
    columns : sequence of str
        Column names, in order; keys of a row not among them are left out.
    rows : iterable of mapping
        The rows.
    value : callable
        Formats a value before it is escaped (e.g. floats to a fixed precision).
    """
    text = io.StringIO()
    writer = SafeCsvWriter(text, columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({column: row.get(column) for column in columns}, value)
    return text.getvalue()


class SafeCsvWriter:
    """A :class:`csv.DictWriter` whose cells go through :func:`spreadsheet_cell` (``\\n`` line ends).

    Parameters
    ----------
    stream : file object
        Opened with ``newline=""``.
    columns : sequence of str
        Column names, in order.
    """

    def __init__(self, stream, columns: Sequence[str]) -> None:
        self._writer = csv.DictWriter(stream, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")

    def writeheader(self) -> None:
        self._writer.writeheader()

    def writerow(self, row: Mapping[str, object], value=lambda v: v) -> None:
        self._writer.writerow({k: spreadsheet_cell(value(v)) for k, v in row.items()})
