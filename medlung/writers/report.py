"""``report.csv`` and ``report.json``: one row per input, rewritten atomically after each film."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO

from medlung.atomic import open_for_appending, write_text_atomically
from medlung.tables import SafeCsvWriter, csv_text

#: The estimated Dice (medlung.estimation.calibration.DiceEstimate.report_fields): both lungs, then each lung; the
#: estimate and its 80 % interval, 0-1 (empty when the model has no Dice calibration).
DICE_COLUMNS = tuple(
    f"{prefix}dice_estimate{suffix}" for prefix in ("", "right_", "left_") for suffix in ("", "_low", "_high")
)
#: Report columns, in order (docs/design.md, "Outputs"), then medlung's additions.
COLUMNS: tuple[str, ...] = (
    "file",
    "status",
    "rows",
    "cols",
    "spacing_mm",
    "spacing_source",
    "lungs",
    "right_cm2",
    "left_cm2",
    "total_cm2",
    "right_px",
    "left_px",
    "total_px",
    "qc",
    "qc_reasons",
    *DICE_COLUMNS,
    "seconds",
    "error",
    "calibrated",
    "orientation",
    "orientation_check",
    "empty_lungs",
    "outputs",
    "notes",
)
#: Shape of each lung (medlung.inference.measures): lengths in shape_unit (mm, or px without spacing), convex area
#: in shape_unit², solidity 0-1.
SHAPE_COLUMNS = (
    "shape_unit",
    *tuple(
        f"{side}_{name}"
        for side in ("right", "left")
        for name in ("height", "width", "perimeter", "convex_area", "solidity")
    ),
)
COLUMNS += SHAPE_COLUMNS
#: Added only when identifiers are asked for (``--include-identifiers``).
IDENTIFIER_COLUMNS = ("patient_id", "study_instance_uid")


class Report:
    """Rows of a predict run, kept on disk as CSV and JSON after every film.

    Parameters
    ----------
    folder : Path
        Output folder.
    overwrite : bool
        Replace report files from an earlier run (else :meth:`keep_earlier` moves them aside).
    identifiers : bool
        Add the patient ID and study UID columns.
    name : str
        File names without extension (``report``: ``report.csv``, ``report.json``, earlier ``report.<n>.csv``).
    columns : tuple of str, optional
        Other columns than a predict run's (e.g. ``medlung pull``'s study rows).
    """

    def __init__(
        self,
        folder: Path,
        overwrite: bool = False,
        identifiers: bool = False,
        name: str = "report",
        columns: tuple[str, ...] | None = None,
    ) -> None:
        self.name = name
        self.csv_path = Path(folder) / f"{name}.csv"
        self.json_path = Path(folder) / f"{name}.json"
        self.overwrite = overwrite
        self.columns = (columns or COLUMNS) + (IDENTIFIER_COLUMNS if identifiers else ())
        self.rows: list[dict] = []

    def keep_earlier(self) -> Path | None:
        """Move the report of an earlier run aside (``<name>.<n>.csv/.json``) unless overwriting.

        Returns
        -------
        Path or None
            Where the earlier ``report.csv`` now is.
        """
        if self.overwrite or not (self.csv_path.exists() or self.json_path.exists()):
            return None
        number = 1
        while any(p.with_name(f"{self.name}.{number}{p.suffix}").exists() for p in (self.csv_path, self.json_path)):
            number += 1
        kept = None
        for path in (self.csv_path, self.json_path):
            if path.exists():
                target = path.with_name(f"{self.name}.{number}{path.suffix}")
                path.rename(target)
                kept = kept or target
        return kept

    def add(self, row: dict) -> None:
        """Add one row and rewrite both files."""
        self.rows.append({column: row.get(column) for column in self.columns})
        self.save()

    def save(self) -> None:
        content = csv_text(self.columns, self.rows, _csv_value)
        write_text_atomically(self.csv_path, content, overwrite=True)
        document = json.dumps(self.rows, indent=2)
        write_text_atomically(self.json_path, document, overwrite=True)


def _csv_value(value):
    """A report value as a CSV cell: floats to 4 decimals, lists joined with ``;`` (escaped by medlung.tables)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value == value else "nan"
    if isinstance(value, (list, tuple)):
        return ";".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in value)
    return value


class StreamingReport(Report):
    """A report for runs too long to rewrite after every film (a Dask run over an archive).

    ``report.csv`` grows by one flushed line per film (a reader or a crash
    sees whole rows); ``report.json`` is written alongside as ``.report.json.part``
    and moved into place by :meth:`close`. No row is kept in memory. Both
    files are created as new files in OUT (:func:`medlung.atomic.open_for_appending`):
    a link planted there is replaced, never written through.

    Parameters
    ----------
    folder : Path
        Output folder.
    overwrite : bool
        Replace report files from an earlier run (else :meth:`keep_earlier` moves them aside).
    identifiers : bool
        Add the patient ID and study UID columns.
    """

    def __init__(self, folder: Path, overwrite: bool = False, identifiers: bool = False) -> None:
        super().__init__(folder, overwrite=overwrite, identifiers=identifiers)
        self.count = 0
        self._csv: TextIO | None = None
        self._json: TextIO | None = None
        self._json_part = self.json_path.with_name(".report.json.part")

    def open(self) -> StreamingReport:
        """Start both files (an earlier report is moved aside first unless overwriting)."""
        self.keep_earlier()
        self._csv = csv_file = open_for_appending(self.csv_path, overwrite=True)  # an earlier one was moved aside
        self._writer = SafeCsvWriter(csv_file, self.columns)
        self._writer.writeheader()
        csv_file.flush()
        self._json = json_file = open_for_appending(self._json_part, overwrite=True)
        json_file.write("[")
        return self

    def _files(self) -> tuple[TextIO, TextIO]:
        if self._csv is None or self._json is None:
            raise RuntimeError(f"{self.csv_path}: the streaming report is not open; call open() (or use it in 'with')")
        return self._csv, self._json

    def add(self, row: dict) -> None:
        """Append one row to both files."""
        csv_file, json_file = self._files()
        row = {column: row.get(column) for column in self.columns}
        self._writer.writerow(row, _csv_value)
        csv_file.flush()
        json_file.write(("," if self.count else "") + "\n  " + json.dumps(row))
        self.count += 1

    def save(self) -> None:  # rows are written as they come
        pass

    def close(self) -> None:
        """Finish ``report.json`` (also after an interrupted run: it then lists the rows written so far)."""
        if self._csv is not None:
            csv_file, json_file = self._files()
            csv_file.close()
            json_file.write("\n]\n" if self.count else "]\n")
            json_file.close()
            os.replace(self._json_part, self.json_path)
            self._csv = self._json = None

    def __enter__(self) -> StreamingReport:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
