"""``report.csv`` and ``report.json``: one row per input, rewritten atomically after each film."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from medlung.writers.atomic import write_atomically

#: Report columns, in order (docs/design.md, "Outputs"), then medlung's additions.
COLUMNS = ("file", "status", "rows", "cols", "spacing_mm", "spacing_source", "right_cm2", "left_cm2", "total_cm2",
           "seconds", "error", "calibrated", "orientation", "empty_lungs", "outputs", "notes")
#: Shape of each lung (medlung.inference.measures): lengths in shape_unit (mm, or px without spacing), convex area
#: in shape_unit², solidity 0-1.
SHAPE_COLUMNS = ("shape_unit",) + tuple(f"{side}_{name}" for side in ("right", "left")
                                        for name in ("height", "width", "perimeter", "convex_area", "solidity"))
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
    """

    def __init__(self, folder: Path, overwrite: bool = False, identifiers: bool = False) -> None:
        self.csv_path = Path(folder) / "report.csv"
        self.json_path = Path(folder) / "report.json"
        self.overwrite = overwrite
        self.columns = COLUMNS + (IDENTIFIER_COLUMNS if identifiers else ())
        self.rows: list[dict] = []

    def keep_earlier(self) -> Path | None:
        """Move the report of an earlier run aside (``report.<n>.csv/.json``) unless overwriting.

        Returns
        -------
        Path or None
            Where the earlier ``report.csv`` now is.
        """
        if self.overwrite or not (self.csv_path.exists() or self.json_path.exists()):
            return None
        number = 1
        while any(p.with_name(f"report.{number}{p.suffix}").exists() for p in (self.csv_path, self.json_path)):
            number += 1
        kept = None
        for path in (self.csv_path, self.json_path):
            if path.exists():
                target = path.with_name(f"report.{number}{path.suffix}")
                path.rename(target)
                kept = kept or target
        return kept

    def add(self, row: dict) -> None:
        """Add one row and rewrite both files."""
        self.rows.append({column: row.get(column) for column in self.columns})
        self.save()

    def save(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        content = text.getvalue()
        write_atomically(self.csv_path, lambda tmp: tmp.write_text(content), overwrite=True)
        document = json.dumps(self.rows, indent=2)
        write_atomically(self.json_path, lambda tmp: tmp.write_text(document), overwrite=True)


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value == value else "nan"
    if isinstance(value, (list, tuple)):
        return ";".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in value)
    return value
