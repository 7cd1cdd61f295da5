"""Evaluate a model per lung convention, data source and view; write the model card's "Conventions" section.

Reads the combined datalist written by ``scripts/multi_source_datalist.py``
(columns ``image, mask, ignore, lungs, split, source, view``) and scores the
model with ``medlung evaluate``'s own code on each group of one split, each
with the convention its masks follow (a metric never mixes conventions):

* ``covid_v7`` (anatomical, ignore masks left out), also per view (PA / AP / AP Supine);
* Shenzhen films outside the annotation batches (field);
* Shenzhen annotation-batch films (anatomical);
* Montgomery films (field), of the split and (``--montgomery-val``) also of its validation split.

Optionally a second model (``--baseline``, e.g. the previous release) is
scored on the same groups with the convention it has (a field-only model's
field output stands in for "the lung" there). Writes one ``medlung evaluate``
folder per group under ``--out``, the worst films' montages and a figure with
both conventions on one film into the bundle's ``docs/images/``, and the
markdown section between ``<!-- medlung:conventions:begin -->`` and
``...:end -->`` of the card. Usage::

    python scripts/convention_evaluation.py runs/multi_source.csv --model bundles/medlung_cxr_lung \\
        --baseline "2.0.0=runs/bundle_2.0.0" --out runs/conventions --card bundles/medlung_cxr_lung/docs/README.md \\
        --montgomery-val

Each group's rows come together, the model first and the baselines after it, on the same films.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_card_evaluation import shrink_picture

BEGIN, END = "<!-- medlung:conventions:begin -->", "<!-- medlung:conventions:end -->"
#: (group name, source, convention of its masks, split: None for the --split asked)
GROUPS = (
    ("covid_v7", "covid_v7", "anatomical", None),
    ("Shenzhen outside the batches", "shenzhen", "field", None),
    ("Shenzhen annotation batches", "shenzhen", "anatomical", None),
    ("Montgomery", "montgomery", "field", None),
    ("Montgomery, val split", "montgomery", "field", "val"),
)


def read_rows(datalist: Path, split: str | None = None) -> list[dict]:
    """Rows of the combined datalist in ``split`` (every row when None)."""
    with open(datalist, newline="") as handle:
        return [row for row in csv.DictReader(handle) if split is None or row["split"] == split]


def write_group_csv(rows: list[dict], path: Path) -> Path:
    """A CSV ``medlung evaluate`` reads: no split column (every row is scored), and no lungs column, since the
    group already holds one convention (a field-only baseline is then scored against it too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=("image", "mask", "ignore"), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def score(model, rows: list[dict], lungs: str, out: Path, name: str, reuse: bool = False) -> list[dict]:
    """Per-film rows of ``medlung evaluate`` for ``rows`` with ``model`` drawing ``lungs``.

    With ``reuse``, a group already scored into ``out/name`` is read back instead of scored again.
    """
    from medlung.evaluation import evaluate
    from medlung.inference import Segmenter

    if reuse and (out / name / "metrics.csv").is_file():
        with open(out / name / "metrics.csv", newline="") as handle:
            return [{**r, "dice": float(r["dice"]) if r["dice"] else float("nan")} for r in csv.DictReader(handle)]

    segmenter = Segmenter(model, lungs=lungs) if not isinstance(model, Segmenter) else model
    group_csv = write_group_csv(rows, out / f"{name}.csv")
    result = evaluate(segmenter.spec.source, group_csv, out / name, part="all", segmenter=segmenter, overwrite=True)
    return result.rows


def table_row(name: str, lungs: str, model: str, s: dict) -> str:
    if not s.get("n"):
        return f"| {name} | {lungs} | {model} | 0 | | | | |"
    return (
        f"| {name} | {lungs} | {model} | {s['n']} | {s['mean']:.4f} | {s['median']:.4f} | {s['p5']:.4f} | "
        f"{s['min']:.4f} |"
    )


def both_conventions_figure(model, film_path: str, truth_path: str, target: Path) -> None:
    """One film with the field (solid) and anatomical (outline) lungs of the model, and the truth mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medlung.inference import Segmenter
    from medlung.io import load_film
    from medlung.io.masks import load_label_map

    film = load_film(film_path)
    field = Segmenter(model, lungs="field")(film).lungs
    anatomical = Segmenter(model, lungs="anatomical")(film).lungs
    truth = load_label_map(truth_path, film.shape) > 0
    grey = (film.pixels - film.pixels.min()) / max(float(np.ptp(film.pixels)), 1e-6)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    for axis, title in zip(axes, ("model: field (orange) inside anatomical (blue)", "truth (V7, anatomical)")):
        axis.imshow(grey, cmap="gray")
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    axes[0].contour(anatomical, levels=[0.5], colors=["#1e90ff"], linewidths=1.5)
    axes[0].contour(field, levels=[0.5], colors=["#ff8c00"], linewidths=1.5)
    axes[1].contour(truth, levels=[0.5], colors=["#32cd32"], linewidths=1.5)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=90)
    plt.close(fig)


def before_after_figure(models: list, films: list[str], target: Path) -> None:
    """Anatomical lungs (blue) and lung field (orange) of each model (columns) on each film (rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medlung.inference import Segmenter
    from medlung.io import load_film

    fig, axes = plt.subplots(len(films), len(models), figsize=(4.2 * len(models), 4.4 * len(films)), squeeze=False)
    for column, (label, model) in enumerate(models):
        both = {lungs: Segmenter(model, lungs=lungs) for lungs in ("field", "anatomical")}
        for row, path in enumerate(films):
            film = load_film(path)
            grey = (film.pixels - film.pixels.min()) / max(float(np.ptp(film.pixels)), 1e-6)
            axis = axes[row, column]
            axis.imshow(grey, cmap="gray")
            axis.contour(both["anatomical"](film).lungs, levels=[0.5], colors=["#1e90ff"], linewidths=1.4)
            axis.contour(both["field"](film).lungs, levels=[0.5], colors=["#ff8c00"], linewidths=0.8)
            axis.set_title(f"{label}: {Path(path).name}", fontsize=9)
            axis.axis("off")
    fig.suptitle("anatomical lungs (blue) and lung field (orange)", fontsize=10)
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datalist", type=Path, help="CSV from scripts/multi_source_datalist.py")
    parser.add_argument("--model", type=Path, required=True, help="bundle, run folder or checkpoint")
    parser.add_argument("--name", help="how the tables name the model (default: its folder or file name)")
    parser.add_argument("--baseline", action="append", default=[], help="NAME=MODEL scored the same way")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--card", type=Path, help="model card to write the section into")
    parser.add_argument("--figure-film", default="", help="image path (in the datalist) for the two-convention figure")
    parser.add_argument("--note", action="append", default=[], help="a paragraph to add at the end of the section")
    parser.add_argument("--reuse", action="store_true", help="read groups already scored in --out instead of rescoring")
    parser.add_argument("--montgomery-val", action="store_true", help="also score Montgomery's validation films")
    parser.add_argument(
        "--before-after",
        action="append",
        default=[],
        help="a film (any path) drawn by every model, anatomical and field, in one figure (repeatable)",
    )
    parser.add_argument("--before-after-caption", default="", help="what the before/after figure's films are")
    args = parser.parse_args(argv)

    from medlung.inference import Segmenter
    from medlung.metrics import summarize

    every = read_rows(args.datalist)
    rows = [r for r in every if r["split"] == args.split]
    models = [(args.name or args.model.name, str(args.model))] + [tuple(b.split("=", 1)) for b in args.baseline]
    lines = [
        BEGIN,
        "",
        f"Per convention, data source and view, on the **{args.split}** split (native grid, "
        "`medlung evaluate` code; covid_v7 ignore regions left out). A metric never mixes conventions: each "
        "group is scored with the convention its masks follow. A field-only model (no anatomical output) is "
        "scored with its field output where the truth is anatomical: that is what it gave users before.",
        "",
        "| films | convention | model | n | Dice mean | median | 5th pct | min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary: dict = {}
    images = args.card.parent / "images" if args.card else args.out / "images"
    for name, source, lungs, split in GROUPS:
        if split is not None and (split == args.split or (source == "montgomery" and not args.montgomery_val)):
            continue
        group = [
            r for r in every if r["split"] == (split or args.split) and r["source"] == source and r["lungs"] == lungs
        ]
        if not group:
            continue
        for label, model in models:
            try:
                segmenter = Segmenter(model, lungs=lungs)
                drawn = lungs
            except ValueError:
                segmenter, drawn = Segmenter(model, lungs="field"), "field (only output)"
            key = f"{label}|{name}"
            scored = score(segmenter, group, lungs, args.out / _slug(label), _slug(name), args.reuse)
            dice = {r["image"]: r["dice"] for r in scored if r["status"] == "ok"}
            summary[key] = summarize(list(dice.values()))
            lines.append(table_row(name, lungs if drawn == lungs else f"{lungs} (model: {drawn})", label, summary[key]))
            if source == "covid_v7":
                for view in sorted({r["view"] for r in group}):
                    in_view = [dice[r["image"]] for r in group if r["view"] == view and r["image"] in dice]
                    summary[f"{key}|{view}"] = summarize(in_view)
                    lines.append(table_row(f"covid_v7, {view}", lungs, label, summary[f"{key}|{view}"]))
    lines.append("")
    first = _slug(models[0][0])
    for name, _, lungs, _split in GROUPS:
        worst = args.out / first / _slug(name) / "worst.png"
        if worst.exists():
            picture = images / f"conventions_worst_{_slug(name)}.png"
            shrink_picture(worst, picture, 640)
            lines += [
                f"Lowest-Dice films, {name} ({lungs}): film | truth | prediction | overlay",
                "",
                f"![worst {name}](images/{picture.name})",
                "",
            ]
    figure_row = next((r for r in rows if r["image"] == args.figure_film), None) or next(
        (r for r in rows if r["source"] == "covid_v7"), None
    )
    if figure_row is not None:
        picture = images / "conventions_both.png"
        both_conventions_figure(args.model, figure_row["image"], figure_row["mask"], picture)
        shrink_picture(picture, picture, 900)
        lines += [
            f"Both conventions on one covid_v7 {args.split} film ({Path(figure_row['image']).name}, "
            f"{figure_row['view']}; film {figure_row.get('licence', '')}, source {figure_row.get('citation', '')}; "
            "lung mask V7 Labs, CC BY 4.0):",
            "",
            "![both conventions](images/conventions_both.png)",
            "",
        ]
    if args.before_after:
        picture = images / "anatomical_before_after.png"
        before_after_figure(models[::-1], args.before_after, picture)  # baselines first: before, then after
        shrink_picture(picture, picture, 900)
        lines += [
            "The anatomical convention on healthy PA films, before (the baselines, oldest on the left) and "
            f"after (this model, right){': ' + args.before_after_caption if args.before_after_caption else ''}:",
            "",
            "![anatomical lungs before and after](images/anatomical_before_after.png)",
            "",
        ]
    lines += [f"{note}\n" for note in args.note]
    lines.append(END)
    (args.out / "conventions_summary.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(lines))
    if args.card:
        text = args.card.read_text()
        block = "\n".join(lines)
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        args.card.write_text(text)
    return 0


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


if __name__ == "__main__":
    raise SystemExit(main())
