"""``medlung evaluate PRED_OR_MODEL DATA -o OUT``: Dice, IoU, HD95 and ASSD per film, with a summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from medlung import environment
from medlung.cli.common import fail, is_verbose, quiet_warnings
from medlung.errors import MedlungError

_PARTS = ("test", "validation", "training", "all")


@click.command()
@click.argument("pred_or_model", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder for metrics.csv, summary.json, boxplot.png, worst.png, calibration.png (created).",
)
@click.option(
    "--part",
    type=click.Choice(_PARTS),
    default="test",
    show_default=True,
    help="Part of DATA to evaluate when DATA has a split (otherwise every film).",
)
@click.option("--device", default="auto", show_default=True, help="For a model: cpu, cuda or auto.")
@click.option("--tta", is_flag=True, help="For a model: average with the mirrored film.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate at most N films.")
@click.option("--overwrite", is_flag=True, help="Replace the results already in OUT.")
@click.option(
    "--lungs",
    type=click.Choice(["field", "anatomical"]),
    default="field",
    show_default=True,
    help="Lung convention scored: films whose DATA entry names the other one are left out.",
)
@click.option(
    "--only-predicted",
    is_flag=True,
    help="For a folder of predictions: score only the films that have one; say how many were skipped.",
)
@click.pass_context
def evaluate(ctx, pred_or_model, data, output, part, device, tta, limit, overwrite, lungs, only_predicted) -> None:
    """Score PRED_OR_MODEL against the masks of DATA.

    PRED_OR_MODEL is a folder of predicted masks matched by film stem
    (<stem>_labels.nii.gz, <stem>_seg.dcm, <stem>_lungs.png or <stem>.png, as
    medlung predict writes them), or a model to run: a medlung bundle, a
    training run folder or a .pt checkpoint. DATA is a folder with images/
    and masks/, a CSV (columns image, mask; optional split, lungs, ignore) or a MONAI
    datalist JSON; ignore masks (column/key ignore, or masks/<stem>_ignore.png)
    are left out of every metric.

    A film of DATA without a prediction in the folder is an error row (exit
    1) unless --only-predicted is given: then only the films with a
    prediction are scored and the others are counted as skipped.

    Per film: Dice, IoU, HD95 and average symmetric surface distance for both
    lungs and each lung, in mm when the film's spacing is known, in pixels
    otherwise (column unit). When the films carry an estimated Dice (a model
    with a Dice calibration, or the report.json medlung predict wrote in the
    folder), also how well it agreed: MAE, Pearson and Spearman r, interval
    coverage, how many films below the flag's threshold low_dice_estimate
    caught and how many good films (Dice >= 0.95) it flagged. Writes
    metrics.csv, summary.json, boxplot.png, worst.png and calibration.png
    (estimated against true Dice) into OUT. Exit status: 0 all films scored,
    1 some failed, 2 usage error.
    """
    verbose = is_verbose(ctx)
    if not pred_or_model.exists():
        raise click.BadParameter(f"{pred_or_model} does not exist.", param_hint="PRED_OR_MODEL")
    if not data.exists():
        raise click.BadParameter(f"{data} does not exist.", param_hint="DATA")

    from medlung.errors import OutputExistsError
    from medlung.evaluation import check_outputs, is_model_source
    from medlung.evaluation import evaluate as run_evaluation

    try:
        check_outputs(output, overwrite)
    except OutputExistsError as exc:
        raise click.UsageError(str(exc)) from None
    if not is_model_source(pred_or_model) and not pred_or_model.is_dir():
        raise click.BadParameter(
            f"{pred_or_model} is neither a folder of predictions nor a model "
            "(bundle folder, run folder or .pt checkpoint).",
            param_hint="PRED_OR_MODEL",
        )
    if only_predicted and is_model_source(pred_or_model):
        raise click.BadParameter(
            "is for a folder of predictions; a model predicts every film.", param_hint="--only-predicted"
        )

    started = time.perf_counter()
    show_progress = not environment.no_progress()
    done = 0

    def progress(row: dict) -> None:
        nonlocal done
        done += 1
        if row["status"] != "ok":
            click.echo(f"error: {row['error']}", err=True)
        elif show_progress:
            click.echo(f"[{done}] {row['film']}: Dice {row['dice']:.4f}", err=True)

    try:
        with quiet_warnings():
            result = run_evaluation(
                pred_or_model,
                data,
                output,
                part=part,
                device=device,
                tta=tta,
                limit=limit,
                overwrite=overwrite,
                progress=progress,
                only_predicted=only_predicted,
                lungs=lungs,
            )
    except (MedlungError, ValueError) as exc:  # a DatasetError or ModelError is a usage error: exit 2
        fail(exc, verbose)
    summary = result.summary
    click.echo(summary_table(summary))
    seconds = time.perf_counter() - started
    skipped = summary.get("skipped_without_prediction")
    skipped = f", skipped {skipped} without a prediction" if skipped else ""
    click.echo(
        f"scored {summary['ok']} of {summary['films']} films ({summary['scope']}){skipped}, "
        f"failed {summary['failed']}, {seconds:.1f} s; results: {output / 'metrics.csv'}"
    )
    sys.exit(1 if result.failed else 0)


def summary_table(summary: dict) -> str:
    """A short text table: mean, median, 5th and 95th percentile of Dice and HD95 (both lungs, each lung)."""
    lines = [f"{'metric':<24}{'mean':>9}{'median':>9}{'p5':>9}{'p95':>9}{'n':>6}"]
    for name, label in (
        ("dice", "Dice both lungs"),
        ("dice_right", "Dice right lung"),
        ("dice_left", "Dice left lung"),
        ("hd95", "HD95 both lungs"),
        ("assd", "ASSD both lungs"),
    ):
        stats = summary["metrics"].get(name, {})
        if stats.get("unit") == "mixed":
            for unit, by_unit in stats["by_unit"].items():
                lines.append(_line(f"{label} ({unit})", by_unit))
            continue
        if stats.get("unit"):
            label = f"{label} ({stats['unit']})"
        if stats.get("n"):
            lines.append(_line(label, stats))
    estimate = (summary.get("dice_estimate") or {}).get("both") or {}
    if estimate.get("n"):
        lines.append(estimate_line(estimate))
    return "\n".join(lines)


def estimate_line(numbers: dict) -> str:
    """One line on the estimated Dice: MAE, r, coverage and the flag's record."""

    def number(key: str) -> str:
        value = numbers.get(key)
        return "-" if value is None else f"{value:.3f}"

    return (
        f"estimated Dice ({numbers['n']} films): MAE {number('mae')}, Pearson r {number('pearson')}, "
        f"Spearman r {number('spearman')}, 80 % interval covers {number('coverage')}; flag < "
        f"{numbers['threshold']:.2f} caught {numbers['caught']} of {numbers['below']} films below it, "
        f"flagged {numbers['false_flags']} of {numbers['good']} films >= 0.95"
    )


def _line(label: str, stats: dict) -> str:
    def number(value):
        return f"{value:>9.4f}" if value is not None else f"{'-':>9}"

    extra = f"  ({stats['n_inf']} inf)" if stats.get("n_inf") else ""
    return (
        f"{label:<24}{number(stats['mean'])}{number(stats['median'])}{number(stats['p5'])}"
        f"{number(stats['p95'])}{stats['n']:>6}{extra}"
    )
