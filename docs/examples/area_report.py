"""Measure lung areas over a folder of films into a CSV and a plot.

Every DICOM/PNG/JPEG film under FOLDER (searched recursively) is segmented
with the shipped model through :meth:`medlung.Segmenter.segment_files`, one
film at a time; a file that cannot be used gets an ``error`` row and the loop
goes on. Areas in cm² are written only for *calibrated* films (a pixel
spacing was found in the file, or given with ``--spacing``); films without a
spacing get their pixel counts and ``calibrated = False``, never a made-up
cm² value.

Writes into OUT:

* ``areas.csv``: file, status, rows, cols, spacing_mm, spacing_source,
  calibrated, right_cm2, left_cm2, total_cm2, right_px, left_px, qc (``ok`` or
  ``flagged``), qc_reasons (the quality flags' codes), error;
* ``areas.png``: right and left lung area (cm²) of each calibrated film
  (needs matplotlib; skipped with a message when it is not installed).

Run::

    python docs/examples/area_report.py FOLDER -o OUT [--spacing MM] [--limit N] [--device cpu]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import medlung
from medlung.pipeline.batch import collect_inputs

COLUMNS = (
    "file",
    "status",
    "rows",
    "cols",
    "spacing_mm",
    "spacing_source",
    "calibrated",
    "right_cm2",
    "left_cm2",
    "total_cm2",
    "right_px",
    "left_px",
    "qc",
    "qc_reasons",
    "error",
)


def measure(paths, segmenter, spacing=None) -> list[dict]:
    """One row per film: areas in cm² when calibrated, pixel counts always."""
    rows = []
    for path, result in segmenter.segment_files(paths, spacing=spacing):
        if isinstance(result, Exception):  # a MedlungError: the film could not be used
            rows.append({"file": str(path), "status": "error", "error": str(result)})
            print(f"error: {result}", file=sys.stderr)
            continue
        row = {
            "file": str(path),
            "status": "ok",
            "rows": result.labels.shape[0],
            "cols": result.labels.shape[1],
            "spacing_mm": "" if result.spacing is None else "x".join(f"{s:g}" for s in result.spacing),
            "spacing_source": result.spacing_source,
            "calibrated": result.areas_cm2 is not None,
            "right_px": result.areas_px["right"],
            "left_px": result.areas_px["left"],
            "qc": result.qc,  # "flagged" when the film or its lungs look wrong for a frontal chest film
            "qc_reasons": ";".join(dict.fromkeys(reason.code for reason in result.qc_reasons)),
        }
        if result.areas_cm2 is not None:
            row.update({f"{side}_cm2": round(result.areas_cm2[side], 2) for side in ("right", "left", "total")})
        rows.append(row)
        print(
            f"{path.name}: {row.get('total_cm2', 'not calibrated')}"
            f"{' cm²' if row['calibrated'] else ''} ({row['spacing_source']})"
            f"{'' if result.qc == 'ok' else ', quality flagged: ' + row['qc_reasons']}"
        )
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in COLUMNS})


def plot(rows: list[dict], path: Path) -> bool:
    """Bar chart of right/left lung areas of the calibrated films; False when there is nothing to draw."""
    calibrated = [r for r in rows if r.get("calibrated")]
    if not calibrated:
        print("no calibrated film: no plot (areas in cm² need a pixel spacing)")
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    names = [Path(r["file"]).stem for r in calibrated]
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 2), 3.2), dpi=100)
    ax.bar(
        [i - 0.2 for i in x], [r["right_cm2"] for r in calibrated], width=0.4, label="right lung", color="tab:orange"
    )
    ax.bar([i + 0.2 for i in x], [r["left_cm2"] for r in calibrated], width=0.4, label="left lung", color="tab:blue")
    ax.set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("area (cm²)")
    ax.set_title(f"Lung areas, {len(calibrated)} calibrated of {len(rows)} films", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="films or folders (searched recursively)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--spacing", default=None, help="spacing in mm for every film (MM or ROW,COL)")
    parser.add_argument("--bundle", default=None, help="model (default: the shipped bundle)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--limit", type=int, default=None, help="at most N films")
    args = parser.parse_args(argv)

    paths = collect_inputs(args.inputs)[: args.limit]
    if not paths:
        parser.error("no films found in the inputs given")
    args.output.mkdir(parents=True, exist_ok=True)
    segmenter = medlung.Segmenter(args.bundle, device=args.device)
    rows = measure(paths, segmenter, spacing=args.spacing)
    write_csv(rows, args.output / "areas.csv")
    plot(rows, args.output / "areas.png")
    failed = sum(r["status"] != "ok" for r in rows)
    print(f"{len(rows) - failed} films measured, {failed} failed: {args.output / 'areas.csv'}")
    return 1 if failed == len(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
