"""Compare two ``medlung predict`` output folders: are the results the same?

Used to show that a refactor changes no output: run ``medlung predict`` on
the same films with the code before and after it, then::

    python scripts/compare_predict_outputs.py BEFORE_OUT AFTER_OUT

Compared per film: PNG masks and overlays byte for byte, NIfTI label maps by
header (affine, pixel sizes) and voxels, DICOM-SEGs by their segment pixels
(read back with medlung's reader) and their SOP Instance UIDs, and the
report's area columns. Prints one line per difference and a summary; exit
status 1 when anything differs (UIDs are reported but only count when
``--uids`` is given, since options that change the output also change them).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

AREA_COLUMNS = ("rows", "cols", "spacing_mm", "spacing_source", "right_cm2", "left_cm2", "total_cm2", "empty_lungs")


def compare(before: Path, after: Path, uids: bool = False) -> list[str]:
    """Differences between two predict output folders, one line each."""
    import nibabel
    import pydicom

    from medlung.io.seg import read_dicom_seg

    differences: list[str] = []
    names_before = {p.name for p in before.iterdir() if not p.name.startswith("report")}
    names_after = {p.name for p in after.iterdir() if not p.name.startswith("report")}
    for name in sorted(names_before ^ names_after):
        differences.append(f"{name}: only in {'before' if name in names_before else 'after'}")
    for name in sorted(names_before & names_after):
        a, b = before / name, after / name
        if name.endswith(".png"):
            if a.read_bytes() != b.read_bytes():
                differences.append(f"{name}: PNG bytes differ")
        elif name.endswith(".nii.gz"):
            x, y = nibabel.load(str(a)), nibabel.load(str(b))
            if not np.array_equal(np.asanyarray(x.dataobj), np.asanyarray(y.dataobj)):
                differences.append(f"{name}: NIfTI voxels differ")
            if not np.allclose(x.affine, y.affine) or x.header.get_zooms() != y.header.get_zooms():
                differences.append(f"{name}: NIfTI affine/pixel size differ")
        elif name.endswith("_seg.dcm"):
            if not np.array_equal(read_dicom_seg(a)[0], read_dicom_seg(b)[0]):
                differences.append(f"{name}: SEG pixels differ")
            uid_a, uid_b = (str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (a, b))
            if uid_a != uid_b:
                line = f"{name}: SOP Instance UID differs ({uid_a} vs {uid_b})"
                differences.append(line if uids else f"(note) {line}")
    rows_a, rows_b = (_report(folder) for folder in (before, after))
    for film in sorted(set(rows_a) | set(rows_b)):
        ra, rb = rows_a.get(film), rows_b.get(film)
        if ra is None or rb is None:
            differences.append(f"report: {Path(film).name} only in {'after' if ra is None else 'before'}")
            continue
        for column in AREA_COLUMNS:
            if ra.get(column) != rb.get(column):
                differences.append(f"report: {Path(film).name} {column} {ra.get(column)!r} vs {rb.get(column)!r}")
    return differences


def _report(folder: Path) -> dict:
    with open(folder / "report.csv", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--uids", action="store_true", help="count different SEG UIDs as differences")
    args = parser.parse_args(argv)
    differences = compare(args.before, args.after, args.uids)
    counted = [d for d in differences if not d.startswith("(note)")]
    for line in differences:
        print(line)
    files = len([p for p in args.before.iterdir() if not p.name.startswith("report")])
    print(f"{files} output files compared: {len(counted)} difference(s)")
    return 1 if counted else 0


if __name__ == "__main__":
    sys.exit(main())
