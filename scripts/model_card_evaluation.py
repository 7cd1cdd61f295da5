"""Write the "Full evaluation" section of the shipped bundle's model card from measured results.

Inputs are folders written by ``medlung evaluate`` (one per model/setting)
and a ``medlung predict`` output folder on films from other hospitals. The
section between ``<!-- medlung:evaluation:begin -->`` and ``...:end -->`` in
``bundles/medlung_cxr_lung/docs/README.md`` is replaced, and the pictures it
shows are copied (shrunk) into the bundle's ``docs/images/``. Run it after
``medlung export`` (which rewrites the card). Usage::

    python scripts/model_card_evaluation.py --bundle bundles/medlung_cxr_lung \\
        --eval "BasicUNet (shipped)=runs/eval_basicunet" --eval "BasicUNet + TTA=runs/eval_basicunet_tta" \\
        --eval "UNet++=runs/eval_unetpp" --other runs/other_hospitals --note "free text" \\
        --run "shipped=runs/shipped" --run "UNet++=runs/unetpp"
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from PIL import Image

BEGIN, END = "<!-- medlung:evaluation:begin -->", "<!-- medlung:evaluation:end -->"


def shrink_picture(source: Path, target: Path, width: int) -> None:
    """Copy a picture into the card's images, at most ``width`` pixels wide, as a small palette PNG."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.quantize(colors=128).save(target, format="PNG", optimize=True)  # small enough to commit


def _row(name: str, summary: dict) -> str:
    m = summary["metrics"]
    unit = summary.get("unit", "px")

    def stat(key, field, digits=4):
        value = m.get(key, {}).get(field)
        return "n/a" if value is None else f"{value:.{digits}f}"

    seconds = summary.get("segment_seconds_mean")
    model = summary.get("model") or {}
    described = (
        f"{model['parameters']:,} | {model['working_spacing_mm']:g} mm / {model['roi_size']} px"
        if model
        else "n/a | n/a"
    )
    return (
        f"| {name} | {described} | {summary['ok']}/{summary['films']} | {stat('dice', 'mean')} | "
        f"{stat('dice', 'median')} | {stat('dice', 'p5')} | {stat('dice', 'min')} | {stat('dice_right', 'mean')} | "
        f"{stat('dice_left', 'mean')} | "
        f"{stat('iou', 'mean')} | {stat('hd95', 'mean', 1)} / {stat('hd95', 'median', 1)} {unit} | "
        f"{stat('assd', 'mean', 2)} {unit} | {'' if seconds is None else f'{seconds:.2f}'} |"
    )


def _segment_seconds(folder: Path) -> float | None:
    values = [
        float(r["segment_seconds"]) for r in csv.DictReader(open(folder / "metrics.csv")) if r.get("segment_seconds")
    ]
    return sum(values) / len(values) if values else None


def _experiment_rows(runs: list[str]) -> list[str]:
    """The "settings chosen by experiment" table: one row per training run, from its config.json and metrics.csv."""
    lines = [
        "### How the settings were chosen",
        "",
        "Training runs compared on the **validation** split (working-grid Dice of `medlung train`, best epoch); "
        "the shipped settings are the best of these. Times are wall-clock on 2 CPU cores, often shared with "
        "another run (noisy).",
        "",
        "| run | network | widths | parameters | grid / window | epochs | best val Dice (epoch) | training time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for item in runs:
        name, folder = item.split("=", 1)
        config = json.loads((Path(folder) / "config.json").read_text())
        config = {**config, **(config.get("plan") or {})}  # plan fields nested (runs since 3.0.0) or flat (older)
        history = list(csv.DictReader(open(Path(folder) / "metrics.csv")))
        best = max(history, key=lambda row: float(row["val_dice"]))
        minutes = sum(float(row["seconds"]) for row in history) / 60
        lines.append(
            f"| {name} | `{config['network']}` | {','.join(str(f) for f in config['features'])} | "
            f"{config['parameters']:,} | {config['working_spacing']:g} mm / {config['roi_size']} px | "
            f"{len(history)} of {config['epochs']} | {float(best['val_dice']):.4f} ({best['epoch']}) | "
            f"{minutes:.0f} min |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--eval", action="append", default=[], help="NAME=FOLDER of medlung evaluate")
    parser.add_argument("--other", type=Path, help="medlung predict output on other hospitals' films")
    parser.add_argument("--run", action="append", default=[], help="NAME=RUN folder of medlung train (experiments)")
    parser.add_argument("--note", action="append", default=[], help="a paragraph to add")
    args = parser.parse_args()

    images = args.bundle / "docs" / "images"
    lines = [
        BEGIN,
        "",
        "Measured with `medlung evaluate` on films of the fixed Shenzhen **test** split "
        "(never used for training or model selection; the table gives how many), on each film's native 512x512 grid. The Shenzhen "
        "PNGs carry no pixel spacing, so distances are in **pixels** (about 0.84 mm by the nominal 43 cm "
        "rule, not calibrated). Per-lung scores use the per-lung ground-truth masks.",
        "",
        "### Shenzhen test split (native grid)",
        "",
        "| model | parameters | grid / window | films | Dice mean | median | 5th pct | min | right | left | IoU | "
        "HD95 mean / median | ASSD | s/film |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    first_folder = None
    for item in args.eval:
        name, folder = item.split("=", 1)
        folder = Path(folder)
        first_folder = first_folder or folder
        summary = json.loads((folder / "summary.json").read_text())
        summary["segment_seconds_mean"] = _segment_seconds(folder)
        lines.append(_row(name, summary))
    lines += ["", "s/film: mean time of the segmenter per film on 2 CPU cores while other work ran (noisy).", ""]
    lines += [f"{note}\n" for note in args.note]
    if args.run:
        lines += _experiment_rows(args.run)
    if first_folder is not None:
        shrink_picture(first_folder / "boxplot.png", images / "test_boxplot.png", 900)
        shrink_picture(first_folder / "worst.png", images / "test_worst.png", 640)
        summary = json.loads((first_folder / "summary.json").read_text())
        worst = summary.get("worst_by_dice", [])[:5]
        lines += [
            "### Failure cases",
            "",
            "The five lowest-Dice test films of the shipped model (film | truth | prediction | overlay):",
            "",
            "![worst test films](images/test_worst.png)",
            "",
        ]
        if worst:
            lines += ["| film | Dice | right | left | HD95 |", "|---|---|---|---|---|"]
            for entry in worst:
                values = [entry.get(k) for k in ("dice", "dice_right", "dice_left")]
                shown = " | ".join("n/a" if v is None else f"{v:.4f}" for v in values)
                lines.append(f"| {entry.get('film')} | {shown} | {entry.get('hd95', 0):.1f} {entry.get('unit', '')} |")
            lines.append("")
        lines += ["Distribution of the per-film metrics:", "", "![metrics box plot](images/test_boxplot.png)", ""]
    if args.other:
        rows = list(csv.DictReader(open(args.other / "report.csv")))
        lines += [
            "### Other hospitals' films",
            "",
            "No films with masks from another hospital are available here, so these are qualitative: the "
            "real chest films from other sites in the shared data, segmented with `medlung predict`.",
            "",
            "| film | size (rows x cols) | spacing | right cm² | left cm² | notes |",
            "|---|---|---|---|---|---|",
        ]
        for row in rows:
            if row["status"] != "ok":
                continue
            stem = Path(row["file"]).name.rsplit(".", 1)[0]
            spacing = row["spacing_mm"] or "unknown"
            lines.append(
                f"| {Path(row['file']).name} | {row['rows']} x {row['cols']} | {spacing} | "
                f"{row['right_cm2'] or 'n/a'} | {row['left_cm2'] or 'n/a'} | "
                f"{row['notes'].split(';')[0] if row['notes'] else ''} |"
            )
            overlay = args.other / f"{stem}_overlay.png"
            if overlay.exists():
                shrink_picture(overlay, images / f"other_{stem}.png", 360)
        lines.append("")
        lines += [f"![{p.stem}](images/{p.name})" for p in sorted(images.glob("other_*.png"))]
        lines.append("")
    lines.append(END)

    card = args.bundle / "docs" / "README.md"
    text = card.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    card.write_text(text[:start] + "\n".join(lines) + text[stop:])
    print(f"wrote the evaluation section of {card}")


if __name__ == "__main__":
    main()
