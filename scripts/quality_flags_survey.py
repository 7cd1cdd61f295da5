"""Run the shipped model over every shared film and list the ones the quality check flags.

The thresholds of :mod:`medlung.quality` were calibrated with this script:
every Shenzhen and covid_v7 film is a chest film, so each flag there is a
false alarm (the issue asks for at most 1 %), and every non-chest or lateral
shared DICOM must be flagged. Usage (about 10 minutes on 2 idle CPU cores)::

    python scripts/quality_flags_survey.py ../shared/data --measures qc_measures.jsonl

It prints one line per flagged film (film, reasons), then the flag rate of
each set; ``--measures`` also writes every film's measures (one JSON object
a line) for re-calibrating the thresholds without running the model again.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path


def films(data: Path) -> dict[str, list[tuple[Path, str | None]]]:
    """The films of each set: ``(path, spacing)`` pairs; the spacing trap of the docs is its own set."""
    dicom = sorted((data / "dicom").glob("*.dcm"))
    return {
        "dicom": [(p, None) for p in dicom if not p.name.startswith("seg_")],
        "dicom --spacing 0.143": [(data / "dicom" / "CR-MONO1-10-chest.dcm", "0.143")],
        "shenzhen": [(p, None) for p in sorted((data / "shenzhen" / "images").glob("*.png"))],
        "covid_v7": [(p, None) for p in sorted((data / "covid_v7" / "images").glob("*.png"))],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the shared data folder (../shared/data)")
    parser.add_argument("--bundle", default=None, help="model (default: the shipped bundle)")
    parser.add_argument("--measures", type=Path, default=None, help="write every film's measures here (JSON lines)")
    parser.add_argument(
        "--sets", default="dicom,dicom --spacing 0.143,shenzhen,covid_v7", help="comma-separated sets to run"
    )
    args = parser.parse_args(argv)

    from medlung.inference import Segmenter
    from medlung.io import load_film

    segmenter = Segmenter(args.bundle, device="cpu")
    out = open(args.measures, "w") if args.measures else None
    rates = {}
    chosen = [s.strip() for s in args.sets.split(",")]
    for name, items in films(args.data).items():
        if name not in chosen:
            continue
        flagged = 0
        for path, spacing in items:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                masks = segmenter(load_film(path, spacing=spacing))
            if masks.qc != "ok":
                flagged += 1
                print(f"{name}\t{path.name}\t{'; '.join(str(r) for r in masks.qc_reasons)}", flush=True)
            if out:
                out.write(
                    json.dumps(
                        {
                            "set": name,
                            "film": path.name,
                            "spacing": spacing,
                            "qc": masks.qc,
                            "codes": [r.code for r in masks.qc_reasons],
                            **masks.qc_measures,
                        }
                    )
                    + "\n"
                )
                out.flush()
        rates[name] = (flagged, len(items))
    for name, (flagged, total) in rates.items():
        print(f"{name}: {flagged} of {total} flagged ({100.0 * flagged / max(total, 1):.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
