"""Films as they are stored: the eight flips and quarter turns, with and without PatientOrientation.

For every film of the Shenzhen test split (85) and the covid_v7 test split
(31), and each of the eight ways a frontal film can be stored (standard
``L\\F``, mirrored ``R\\F``, upside down ``L\\H``, rotated 180 ``R\\H``, and the
four quarter turns and transposes):

(a) **tagged**: the turned pixels in a DICOM (DX, PixelSpacing 0.8 x 0.7 mm in
    the standard display, swapped with the rows and columns on a quarter
    turn) with the right PatientOrientation, read by ``medlung.load_film`` and
    segmented; the labels, brought to the standard display, are compared with
    those of the untouched film (``L\\F``) per lung: Dice of the patient's right
    lung and of the patient's left lung (so a right/left swap scores 0).
(b) **untagged**: the same turned pixels without PatientOrientation (as a PNG
    is read): how often ``orientation_check`` flags the film, and how often its
    guess of the stored orientation is exact. The untagged standard film's
    row gives the false flags. With ``--fix`` also Dice of
    ``Segmenter(fix_orientation=True)`` against the untouched film without
    the tag, and how often the orientation it used is the true one.

Prints one table per data set. The shipped model unless ``--bundle``.
Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/orientation.py [--limit N] [--fix]``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Spacing of the untouched film in the DICOM wrapper, (row_mm, col_mm): unequal, so a missed swap would show.
STANDARD_SPACING = (0.8, 0.7)


def test_films(shared: Path, limit: int | None, skip: int = 0) -> dict[str, list[Path]]:
    """The test-split films of each data set (after the first ``skip``, at most ``limit`` of each)."""
    sets = {}
    for name, folder in (("shenzhen", shared / "shenzhen"), ("covid_v7", shared / "covid_v7")):
        rows = [r for r in csv.DictReader(open(folder / "splits.csv")) if r["split"] == "test"]
        sets[name] = [folder / r["image"] for r in rows][skip:][:limit]
    return sets


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def lung_dice(labels: np.ndarray, reference: np.ndarray) -> float:
    """The lower of the right-lung and left-lung Dice (labels 1 and 2 compared as they are)."""
    return min(dice(labels == 1, reference == 1), dice(labels == 2, reference == 2))


def measure(paths: list[Path], segmenter, fixer, folder: Path) -> dict:
    import medlung
    from medlung.orientation import ALL_TRANSFORMS
    from tests import dicom_factory as factory

    results = defaultdict(lambda: defaultdict(list))
    for path in paths:
        pixels = np.asarray(medlung.load_film(path).pixels).astype(np.uint8)
        reference = None
        for transform in ALL_TRANSFORMS:  # the standard display comes first
            orientation = transform.stored_orientation
            key = "\\".join(orientation)
            stored = np.ascontiguousarray(transform.to_stored(pixels))
            spacing = list(transform.inverse().display_spacing(STANDARD_SPACING))  # the stored film's spacing
            ds = factory.radiograph(
                stored, factory.DX_PRESENTATION, PixelSpacing=spacing, PatientOrientation=list(orientation)
            )
            dicom = factory.write(ds, folder / f"{path.stem}_{key.replace(chr(92), '')}.dcm")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tagged = segmenter(medlung.load_film(dicom))
            shown = transform.to_display(tagged.labels)
            if reference is None:
                reference = shown
            results[key]["tagged_dice"].append(lung_dice(shown, reference))
            results[key]["spacing_kept"].append(tagged.spacing == tuple(spacing))
            untagged_film = medlung.Film(stored.astype(np.float32), None, "unknown")
            untagged = segmenter(untagged_film)
            if transform.identity:  # --fix is compared with the untouched film read the same way (no spacing)
                untagged_reference = untagged.labels
            check = untagged.orientation_check
            results[key]["flagged"].append(check not in ("ok", "unknown"))
            results[key]["verdict"].append(check)
            if fixer is not None:
                fixed = fixer(untagged_film)
                results[key]["fixed_dice"].append(lung_dice(transform.to_display(fixed.labels), untagged_reference))
                results[key]["exact"].append(fixed.orientation == orientation)
            dicom.unlink()
        print(".", end="", file=sys.stderr, flush=True)
    return results


def print_table(name: str, results: dict, films: int) -> None:
    from medlung.orientation import ALL_TRANSFORMS

    fix = any("fixed_dice" in r for r in results.values())
    print(f"\n{name}: {films} films")
    header = (
        f"{'stored as':<8} {'how':<50} {'tagged Dice min':>15} {'mean':>7} {'>=0.99':>7} "
        f"{'untagged flagged':>16} {'verdicts':<40}"
    )
    if fix:
        header += f" {'--fix Dice mean':>15} {'>=0.99':>7} {'exact':>6}"
    print(header)
    for transform in ALL_TRANSFORMS:
        key = "\\".join(transform.stored_orientation)
        r = results[key]
        tagged = np.array(r["tagged_dice"])
        verdicts = defaultdict(int)
        for v in r["verdict"]:
            verdicts[v] += 1
        top = ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items(), key=lambda kv: -kv[1])[:3])
        line = (
            f"{key:<8} {transform.description:<50} {tagged.min():15.4f} {tagged.mean():7.4f} "
            f"{(tagged >= 0.99).sum():>3}/{len(tagged):<3} {np.mean(r['flagged']) * 100:15.1f}% {top:<40}"
        )
        if fix:
            fixed = np.array(r["fixed_dice"])
            exact = np.mean(r["exact"]) * 100
            line += f" {fixed.mean():15.4f} {(fixed >= 0.99).sum():>3}/{len(fixed):<3} {exact:5.1f}%"
        print(line)
        if not all(r["spacing_kept"]):
            print(f"   spacing NOT kept on {sum(not k for k in r['spacing_kept'])} films")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--bundle", type=Path, default=None, help="Model (default: the shipped bundle).")
    parser.add_argument("--limit", type=int, default=None, help="At most N test films of each set.")
    parser.add_argument("--skip", type=int, default=0, help="Leave out the first N test films of each set.")
    parser.add_argument("--fix", action="store_true", help="Also measure Segmenter(fix_orientation=True).")
    parser.add_argument("--sets", default="shenzhen,covid_v7")
    args = parser.parse_args(argv)

    import torch

    from medlung.inference import Segmenter

    torch.set_num_threads(1)
    segmenter = Segmenter(args.bundle, device="cpu")
    fixer = Segmenter(args.bundle, device="cpu", fix_orientation=True) if args.fix else None
    print(f"model {segmenter.model_version}; PixelSpacing of the untouched film {STANDARD_SPACING} mm")
    sets = test_films(args.shared, args.limit, args.skip)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets.split(","):
            started = time.perf_counter()
            results = measure(sets[name], segmenter, fixer, Path(tmp))
            print_table(name, results, len(sets[name]))
            print(f"({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
