"""Write the training CSV of the two-convention model from the shared data.

One row per film with ``image, mask, ignore, lungs, split, source, view, licence, citation``
(licence and citation of covid_v7 films, which carry their own):

* Shenzhen films (``shenzhen/splits.csv``, its fixed split) whose masks follow
  the heart's edge -> ``lungs=field``; the annotation batches whose masks draw
  the left lung behind the heart (film numbers 0001-0050, 0276-0300 and
  0326-0350, found by ``scripts/shenzhen_annotation_batches.py``) ->
  ``lungs=anatomical``;
* covid_v7 films (``covid_v7/splits.csv``, its fixed split, V7 whole-lung
  masks and their ignore masks) -> ``lungs=anatomical``.

Usage::

    python scripts/two_convention_datalist.py ../shared/data -o runs/two_conventions.csv
    medlung train runs/two_conventions.csv -o runs/two_conventions --init bundles/medlung_cxr_lung
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

#: Shenzhen film-number ranges (inclusive) whose masks draw the whole left lung (anatomical convention).
SHENZHEN_ANATOMICAL_BATCHES = ((1, 50), (276, 300), (326, 350))
COLUMNS = ("image", "mask", "ignore", "lungs", "split", "source", "view", "licence", "citation")


def shenzhen_convention(image: str) -> str:
    """``"anatomical"`` for a film of the annotation batches, else ``"field"``."""
    number = int(re.search(r"CHNCXR_(\d{4})", image).group(1))
    inside = any(low <= number <= high for low, high in SHENZHEN_ANATOMICAL_BATCHES)
    return "anatomical" if inside else "field"


def rows(data: Path):
    """Rows of the combined datalist, paths absolute."""
    shenzhen = data / "shenzhen"
    with open(shenzhen / "splits.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            yield {
                "image": shenzhen / row["image"],
                "mask": shenzhen / row["mask"],
                "ignore": "",
                "lungs": shenzhen_convention(row["image"]),
                "split": row["split"],
                "source": "shenzhen",
                "view": "PA",
                "licence": "NLM research use; masks CC BY-NC-SA 4.0",
                "citation": "Jaeger et al. 2014 (Shenzhen); Stirenko et al. 2018 (masks)",
            }
    covid = data / "covid_v7"
    with open(covid / "splits.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            yield {
                "image": covid / row["image"],
                "mask": covid / row["mask"],
                "ignore": covid / row["ignore"] if row.get("ignore") else "",
                "lungs": "anatomical",
                "split": row["split"],
                "source": "covid_v7",
                "view": row["view"],
                "licence": row["license"],
                "citation": f"doi:{row['doi']}" if row.get("doi") else row.get("url", ""),
            }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the shared data folder (with shenzhen/ and covid_v7/)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="CSV to write")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    counts: dict = {}
    with open(args.output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows(args.data.resolve()):
            writer.writerow({k: str(v) for k, v in row.items()})
            key = (row["source"], row["lungs"], row["split"])
            counts[key] = counts.get(key, 0) + 1
    for key in sorted(counts):
        print(" ".join(key), counts[key])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
