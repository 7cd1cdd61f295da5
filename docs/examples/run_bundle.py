"""Run the shipped MONAI Bundle on a folder of films, as MONAI's own tools do.

``bundles/medlung_cxr_lung`` is a MONAI Bundle: its ``configs/inference.json``
builds medlung's Segmenter and calls what ``medlung predict`` calls, so
``python -m monai.bundle run`` writes the same files (DICOM-SEG, masks,
overlays, report.csv/report.json) on each film's native grid. This script:

1. checks the bundle's metadata against the schema shipped in the bundle
   (``verify_metadata``, offline);
2. runs the inference config on IN with overrides given as ``--key value``
   (here ``dataset_dir``, ``output_dir``, ``device``, ``formats``);
3. reads ``OUT/report.csv`` and prints one line per film.

Run::

    python docs/examples/run_bundle.py IN -o OUT [--bundle bundles/medlung_cxr_lung] [--formats seg,png]

The same as a shell command (from the repository root)::

    python -m monai.bundle run --bundle_root bundles/medlung_cxr_lung \\
        --config_file bundles/medlung_cxr_lung/configs/inference.json --dataset_dir IN --output_dir OUT
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BUNDLE = REPO / "bundles" / "medlung_cxr_lung"


def monai_bundle(*arguments: str) -> int:
    """Run ``python -m monai.bundle ARGUMENTS`` and return its exit status."""
    command = [sys.executable, "-m", "monai.bundle", *arguments]
    print("$ python -m monai.bundle " + " ".join(arguments), flush=True)
    return subprocess.call(command)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path, help="folder searched recursively for DICOM/PNG films")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="the bundle folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--formats", default="seg,png,nifti,overlay", help="subset of seg,png,nifti,overlay")
    args = parser.parse_args(argv)
    bundle, configs = args.bundle.resolve(), args.bundle.resolve() / "configs"

    schema = configs / "schema.json"
    status = monai_bundle(
        "verify_metadata",
        "--meta_file",
        str(configs / "metadata.json"),
        "--filepath",
        str(schema),
        "--hash_val",
        hashlib.md5(schema.read_bytes()).hexdigest(),
    )
    if status != 0:
        return status

    status = monai_bundle(
        "run",
        "--bundle_root",
        str(bundle),
        "--config_file",
        str(configs / "inference.json"),
        "--dataset_dir",
        str(args.inputs.resolve()),
        "--output_dir",
        str(args.output.resolve()),
        "--device",
        args.device,
        "--formats",
        args.formats,
        "--overwrite",
        "true",
    )
    report = args.output / "report.csv"
    if report.is_file():
        with open(report, newline="") as handle:
            for row in csv.DictReader(handle):
                areas = f"{row['total_cm2']} cm²" if row["total_cm2"] else "areas not calibrated"
                print(f"{Path(row['file']).name}: {row['status']}, {areas} {row['error']}".rstrip())
    return status


if __name__ == "__main__":
    sys.exit(main())
