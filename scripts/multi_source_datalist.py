"""Write the multi-source training CSV (Shenzhen, Montgomery, covid_v7) from the shared data.

One row per film with ``image, mask, ignore, lungs, split, source, view, licence, citation``
(licence and citation per film: covid_v7 films carry their own). Each data set keeps its own fixed
split (its ``splits.csv``):

* Shenzhen films whose masks follow the heart's edge -> ``source=shenzhen, lungs=field``; the
  annotation batches whose masks draw the left lung behind the heart (film numbers 0001-0050,
  0276-0300 and 0326-0350, found by ``scripts/shenzhen_annotation_batches.py``) ->
  ``lungs=anatomical``;
* Montgomery films (lung-field masks) -> ``source=montgomery, lungs=field``;
* covid_v7 films (V7 whole-lung masks and their ignore masks) -> ``source=covid_v7, lungs=anatomical``.

Usage::

    python scripts/multi_source_datalist.py ../shared/data -o runs/multi_source.csv
    python scripts/multi_source_datalist.py ../shared/data -o runs/two_conventions.csv --sources shenzhen,covid_v7
    python scripts/multi_source_datalist.py ../shared/data -o runs/unseen_montgomery.csv --held-out montgomery

``--held-out SOURCE`` makes a hospital the model does not train on: its training and validation films
become validation films, and every test film is left out (nothing is tuned on them, and a run made for
a comparison does not spend time scoring them). The augmentation ablations measure on such a source.
    medlung train runs/multi_source.csv -o runs/model3 --init bundles/medlung_cxr_lung
"""

from __future__ import annotations

import argparse
import csv
import re
from collections.abc import Iterator
from pathlib import Path

#: Shenzhen film-number ranges (inclusive) whose masks draw the whole left lung (anatomical convention).
SHENZHEN_ANATOMICAL_BATCHES = ((1, 50), (276, 300), (326, 350))
COLUMNS = ("image", "mask", "ignore", "lungs", "split", "source", "view", "licence", "citation")
#: The data sets this script knows, in the order their rows are written.
SOURCES = ("shenzhen", "montgomery", "covid_v7")
NLM_CITATION = "Jaeger et al., Quant Imaging Med Surg 2014;4(6):475-477"


def shenzhen_convention(image: str) -> str:
    """``"anatomical"`` for a film of the annotation batches, else ``"field"``."""
    found = re.search(r"CHNCXR_(\d{4})", image)
    if found is None:
        raise ValueError(f"{image}: not a Shenzhen film name (CHNCXR_####_d).")
    number = int(found.group(1))
    inside = any(low <= number <= high for low, high in SHENZHEN_ANATOMICAL_BATCHES)
    return "anatomical" if inside else "field"


def _read(splits: Path) -> list[dict]:
    with open(splits, newline="") as handle:
        return list(csv.DictReader(handle))


def shenzhen_rows(data: Path) -> Iterator[dict]:
    """Shenzhen films: field, or anatomical for the annotation batches."""
    folder = data / "shenzhen"
    for row in _read(folder / "splits.csv"):
        yield {
            "image": folder / row["image"],
            "mask": folder / row["mask"],
            "ignore": "",
            "lungs": shenzhen_convention(row["image"]),
            "split": row["split"],
            "source": "shenzhen",
            "view": "PA",
            "licence": "NLM research use; masks CC BY-NC-SA 4.0",
            "citation": f"{NLM_CITATION} (Shenzhen); Stirenko et al. 2018, arXiv:1803.01199 (masks)",
        }


def montgomery_rows(data: Path) -> Iterator[dict]:
    """Montgomery County films: lung-field masks."""
    folder = data / "montgomery"
    for row in _read(folder / "splits.csv"):
        yield {
            "image": folder / row["image"],
            "mask": folder / row["mask"],
            "ignore": "",
            "lungs": "field",
            "split": row["split"],
            "source": "montgomery",
            "view": "PA",
            "licence": "NLM research use (films and masks)",
            "citation": f"{NLM_CITATION} (Montgomery County X-ray Set)",
        }


def covid_rows(data: Path) -> Iterator[dict]:
    """covid_v7 films: V7 whole-lung masks, ignore masks where present, per-film licence and source."""
    folder = data / "covid_v7"
    for row in _read(folder / "splits.csv"):
        yield {
            "image": folder / row["image"],
            "mask": folder / row["mask"],
            "ignore": folder / row["ignore"] if row.get("ignore") else "",
            "lungs": "anatomical",
            "split": row["split"],
            "source": "covid_v7",
            "view": row["view"],
            "licence": f"film {row['license']}; mask V7 Labs CC BY 4.0",
            "citation": f"doi:{row['doi']}" if row.get("doi") else row.get("url", ""),
        }


READERS = {"shenzhen": shenzhen_rows, "montgomery": montgomery_rows, "covid_v7": covid_rows}


def rows(data: Path, sources: tuple[str, ...] = SOURCES) -> Iterator[dict]:
    """Rows of the combined datalist, paths absolute, for ``sources`` in that order."""
    for source in sources:
        if source not in READERS:
            raise ValueError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}.")
        yield from READERS[source](data)


def held_out(row: dict, source: str | None) -> dict | None:
    """The row with a held-out source's training films moved to validation; ``None`` for every test film."""
    if source is None:
        return row
    if row["split"] == "test":
        return None
    return {**row, "split": "val"} if row["source"] == source else row


def write_datalist(
    data: Path, output: Path, sources: tuple[str, ...] = SOURCES, held_out_source: str | None = None
) -> dict:
    """Write the CSV; return the films per ``(source, lungs, split)``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    counts: dict = {}
    with open(output, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for original in rows(data.resolve(), sources):
            row = held_out(original, held_out_source)
            if row is None:
                continue
            writer.writerow({k: str(v) for k, v in row.items()})
            key = (row["source"], row["lungs"], row["split"])
            counts[key] = counts.get(key, 0) + 1
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the shared data folder (with shenzhen/, montgomery/, covid_v7/)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="CSV to write")
    parser.add_argument(
        "--sources", default=",".join(SOURCES), help=f"comma-separated data sets (default {','.join(SOURCES)})"
    )
    parser.add_argument(
        "--held-out",
        choices=SOURCES,
        help="a source not trained on: its train and val films validate only; test films left out",
    )
    args = parser.parse_args(argv)
    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    counts = write_datalist(args.data, args.output, sources, args.held_out)
    for key in sorted(counts):
        print(" ".join(key), counts[key])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
