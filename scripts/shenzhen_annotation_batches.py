"""Find the Shenzhen annotation batches whose masks draw the left lung differently, and measure their effect.

A Shenzhen film's name carries a running number (``CHNCXR_0297_0``). Put the
films in bins of consecutive numbers (25 by default) and count, per bin, the
films whose **left-lung** Dice is low (below 0.88 by default): a few bins hold
most of them. In those batches the masks draw the left lung's inner border
straight down behind the heart, where the other batches follow the heart's
edge, so no model trained on the whole set can agree with both. The script
reads ``medlung evaluate`` folders (any parts: training, validation, test;
films matched by name) and, with ``--masks``, the per-lung truth masks, prints
a markdown section with the flagged bins, the test-split statistics with and
without them and a figure, and with ``--bundle`` writes the section into the
model card between ``<!-- medlung:annotations:begin -->`` and
``...:end -->`` (added after the evaluation section when absent). Usage::

    python scripts/shenzhen_annotation_batches.py --eval runs/eval_training --eval runs/eval_validation \\
        --eval runs/eval_test --masks ../shared/data/shenzhen/masks --bundle bundles/medlung_cxr_lung
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from medlung.bundle.model_card import EVALUATION_END
from medlung.metrics import summarize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_card_evaluation import shrink_picture

BEGIN, END = "<!-- medlung:annotations:begin -->", "<!-- medlung:annotations:end -->"
FILM_NAME = re.compile(r"^CHNCXR_(\d{4})_([01])$")
PART_ORDER = ("training", "validation", "test")


@dataclass
class FilmScore:
    """One film's scores from ``medlung evaluate``, with the facts its name and masks give."""

    film: str
    part: str
    number: int
    normal: bool
    dice: float
    dice_left: float
    left_to_right_area: float | None = None


@dataclass
class Batch:
    """A bin of consecutive film numbers."""

    first: int
    last: int
    films: list[FilmScore]
    low_left: int
    flagged: bool


def read_scores(folders: list[Path]) -> list[FilmScore]:
    """Per-film Dice of every scored Shenzhen film in ``medlung evaluate`` folders.

    Parameters
    ----------
    folders : list of Path
        Output folders of ``medlung evaluate`` (``metrics.csv`` and ``summary.json``).

    Returns
    -------
    list of FilmScore
        One per film scored with per-lung masks, sorted by film number; a film
        in several folders is taken from the first.
    """
    scores: dict[str, FilmScore] = {}
    for folder in folders:
        part = json.loads((folder / "summary.json").read_text()).get("part") or folder.name
        with open(folder / "metrics.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                match = FILM_NAME.match(row["film"])
                if row["status"] != "ok" or row["per_lung"] != "yes" or not match or row["film"] in scores:
                    continue
                scores[row["film"]] = FilmScore(
                    row["film"],
                    part,
                    int(match.group(1)),
                    match.group(2) == "0",
                    float(row["dice"]),
                    float(row["dice_left"]),
                )
    return sorted(scores.values(), key=lambda score: score.number)


def add_area_ratios(scores: list[FilmScore], masks: Path) -> None:
    """Set each film's truth left/right lung area ratio from ``<film>_lung_L.png`` and ``<film>_lung_R.png``."""
    for score in scores:
        areas = []
        for side in ("L", "R"):
            with Image.open(masks / f"{score.film}_lung_{side}.png") as mask:
                areas.append(int((np.asarray(mask.convert("L")) > 127).sum()))
        score.left_to_right_area = areas[0] / areas[1] if areas[1] else None


def find_batches(scores: list[FilmScore], size: int, low_dice: float, share: float, min_films: int) -> list[Batch]:
    """Bin the films by number and flag the bins where low left-lung Dice is common.

    Parameters
    ----------
    scores : list of FilmScore
    size : int
        Film numbers per bin (bins start at 1, 1 + size, ...).
    low_dice : float
        A film's left lung is "low" below this Dice.
    share : float
        A bin is flagged when at least this fraction of its films are low.
    min_films : int
        Bins with fewer scored films are never flagged.

    Returns
    -------
    list of Batch
        The bins that hold scored films, in film-number order.
    """
    bins: dict[int, list[FilmScore]] = {}
    for score in scores:
        bins.setdefault((score.number - 1) // size, []).append(score)
    batches = []
    for index, films in sorted(bins.items()):
        low = sum(score.dice_left < low_dice for score in films)
        batches.append(
            Batch(
                index * size + 1, (index + 1) * size, films, low, len(films) >= min_films and low >= share * len(films)
            )
        )
    return batches


def films_in_flagged(batches: list[Batch]) -> set[str]:
    """Names of the films in the flagged bins."""
    return {score.film for batch in batches if batch.flagged for score in batch.films}


def _stats(values: list[float]) -> str:
    s = summarize(values)
    if not s["n"]:
        return "0 | n/a | n/a | n/a"
    return f"{s['n']} | {s['mean']:.4f} | {s['median']:.4f} | {s['p5']:.4f}"


def _area_ratios(films: list[FilmScore]) -> str:
    """Median truth left/right lung area ratio of the normal and of the TB films, "n/a" where none is known."""
    shown = []
    for normal in (True, False):
        values = [s.left_to_right_area for s in films if s.normal == normal and s.left_to_right_area is not None]
        shown.append(f"{np.median(values):.3f}" if values else "n/a")
    return " / ".join(shown)


def write_figure(scores: list[FilmScore], batches: list[Batch], low_dice: float, path: Path) -> None:
    """Left-lung Dice against film number, one colour per part, flagged bins shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 3.2))
    for batch in batches:
        if batch.flagged:
            axis.axvspan(batch.first - 0.5, batch.last + 0.5, color="#f4cccc", zorder=0)
    for part, colour in zip(PART_ORDER, ("#1f77b4", "#2ca02c", "#d62728")):
        chosen = [s for s in scores if s.part == part]
        axis.scatter([s.number for s in chosen], [s.dice_left for s in chosen], s=9, color=colour, label=part)
    axis.axhline(low_dice, color="grey", linewidth=0.8, linestyle="--")
    axis.set_xlabel("film number (CHNCXR_####)")
    axis.set_ylabel("left-lung Dice")
    axis.set_ylim(max(0.5, min(s.dice_left for s in scores) - 0.02), 1.0)
    axis.legend(loc="lower right", fontsize=8, ncol=3)
    axis.set_title("shaded: batches whose masks draw the left lung behind the heart", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def montage_caption(folder: Path, inside: set[str]) -> str:
    """Caption for the worst-films montage of a ``medlung evaluate`` folder: which of its films lie in the batches."""
    summary = json.loads((folder / "summary.json").read_text())
    worst = [entry["film"] for entry in summary.get("worst_by_dice", [])[:5]]
    listed = ", ".join(f"{film}{' (in a batch)' if film in inside else ''}" for film in worst)
    return (
        f"The model's {len(worst)} lowest-Dice films of the {summary.get('part') or folder.name} part "
        f"({sum(film in inside for film in worst)} of them in those batches): {listed}. "
        "Film | truth | prediction | overlay (blue: truth the model missed)."
    )


def section(
    scores: list[FilmScore],
    batches: list[Batch],
    low_dice: float,
    figure: str | None,
    montage: tuple[str, str] | None = None,
) -> list[str]:
    """The markdown lines of the section, markers included; ``montage`` is (caption, picture link)."""
    flagged = [b for b in batches if b.flagged]
    inside = films_in_flagged(batches)
    low_total = sum(b.low_left for b in batches)
    low_inside = sum(b.low_left for b in flagged)
    lines = [
        BEGIN,
        "",
        "### Annotation batches in the Shenzhen masks",
        "",
        f"Grouping the films by their running number (bins of {batches[0].last - batches[0].first + 1}) shows "
        f"where the low scores come from: **{low_inside} of the {low_total} films with a left-lung Dice below "
        f"{low_dice:g}** lie in {len(flagged)} of the {len(batches)} bins, which hold {len(inside)} of the "
        f"{len(scores)} films scored. "
        "In those annotation batches the masks draw the left lung's inner border straight down behind the "
        "heart; elsewhere it follows the heart's edge. The film gives little hint of which way its mask was "
        "drawn, so the model learns the majority way and misses the retrocardiac part on those films, even on "
        "the films it was trained on. The last column compares the masks themselves, independent of any "
        "model: the truth left lung's area relative to the right one's, inside and outside those batches.",
        "",
        "| films | scored (training / validation / test) | left-lung Dice < "
        f"{low_dice:g} | mean left-lung Dice | median truth left/right area (normal / TB films) |",
        "|---|---|---|---|---|",
    ]
    for batch in flagged:
        parts = " / ".join(str(sum(s.part == p for s in batch.films)) for p in PART_ORDER)
        lines.append(
            f"| CHNCXR_{batch.first:04d}-{batch.last:04d} | {parts} | {batch.low_left} | "
            f"{np.mean([s.dice_left for s in batch.films]):.4f} | "
            f"{_area_ratios(batch.films)} |"
        )
    rest = [s for s in scores if s.film not in inside]
    parts = " / ".join(str(sum(s.part == p for s in rest)) for p in PART_ORDER)
    lines += [
        f"| all other films | {parts} | {low_total - low_inside} | "
        f"{np.mean([s.dice_left for s in rest]):.4f} | "
        f"{_area_ratios(rest)} |",
        "",
    ]
    if figure:
        lines += [f"![left-lung Dice by film number]({figure})", ""]
    if montage:
        lines += [montage[0], "", f"![lowest-Dice films]({montage[1]})", ""]
    lines += [
        "Dice of both lungs by part, with and without the films of those batches:",
        "",
        "| part | films | n | mean | median | 5th pct |",
        "|---|---|---|---|---|---|",
    ]
    for part in PART_ORDER:
        chosen = [s for s in scores if s.part == part]
        if not chosen:
            continue
        lines += [
            f"| {part} | all | {_stats([s.dice for s in chosen])} |",
            f"| {part} | outside the batches | {_stats([s.dice for s in chosen if s.film not in inside])} |",
            f"| {part} | inside the batches | {_stats([s.dice for s in chosen if s.film in inside])} |",
        ]
    lines += [
        "",
        "Measured with `medlung evaluate MODEL ../shared/data/shenzhen/splits.csv -o OUT --part PART` "
        "for each part and `scripts/shenzhen_annotation_batches.py` (bins of consecutive film numbers; a bin "
        "is flagged when a set share of its films has a low left-lung Dice).",
        "",
        END,
    ]
    return lines


def write_into_card(card: Path, lines: list[str]) -> None:
    """Replace the section in ``card``, or add it after the evaluation section (or at the end)."""
    text = card.read_text()
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        start, stop = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + block + text[stop:]
    elif EVALUATION_END in text:
        at = text.index(EVALUATION_END) + len(EVALUATION_END)
        text = text[:at] + "\n\n" + block + text[at:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    card.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--eval",
        action="append",
        type=Path,
        required=True,
        help="a medlung evaluate output folder (repeat: one per part)",
    )
    parser.add_argument("--masks", type=Path, help="folder with <film>_lung_L.png and <film>_lung_R.png")
    parser.add_argument("--bundle", type=Path, help="write the section and figure into this bundle's model card")
    parser.add_argument("--figure", type=Path, help="where to write the figure (default: the bundle's docs/images)")
    parser.add_argument(
        "--montage",
        type=Path,
        help="a medlung evaluate folder whose worst-films montage goes into the card (with --bundle)",
    )
    parser.add_argument("--bin-size", type=int, default=25, help="film numbers per bin (default 25)")
    parser.add_argument("--low-dice", type=float, default=0.88, help="left-lung Dice called low (default 0.88)")
    parser.add_argument(
        "--share", type=float, default=0.2, help="flag a bin when this fraction of its films are low (default 0.2)"
    )
    parser.add_argument("--min-films", type=int, default=10, help="never flag bins with fewer films (default 10)")
    args = parser.parse_args(argv)

    scores = read_scores(args.eval)
    if not scores:
        print(
            "error: no Shenzhen film (CHNCXR_####_d) scored with per-lung masks in "
            f"{', '.join(map(str, args.eval))}; run medlung evaluate on the Shenzhen split first",
            file=sys.stderr,
        )
        return 2
    if args.masks:
        add_area_ratios(scores, args.masks)
    batches = find_batches(scores, args.bin_size, args.low_dice, args.share, args.min_films)
    figure_path = args.figure or (args.bundle / "docs" / "images" / "annotation_batches.png" if args.bundle else None)
    if figure_path:
        write_figure(scores, batches, args.low_dice, figure_path)
    link = os.path.relpath(figure_path, args.bundle / "docs") if args.bundle and figure_path else None
    montage = None
    if args.bundle and args.montage:
        picture = args.bundle / "docs" / "images" / "annotation_batches_worst.png"
        shrink_picture(args.montage / "worst.png", picture, 640)
        montage = (
            montage_caption(args.montage, films_in_flagged(batches)),
            os.path.relpath(picture, args.bundle / "docs"),
        )
    lines = section(scores, batches, args.low_dice, link, montage)
    print("\n".join(lines))
    if args.bundle:
        write_into_card(args.bundle / "docs" / "README.md", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
