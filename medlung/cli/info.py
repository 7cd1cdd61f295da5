"""``medlung info FILE...``: facts about films."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from medlung.cli.common import films_counted, is_verbose, quiet_warnings, report_exception, spacing_option
from medlung.errors import MedlungError

_FIELDS = (
    ("size", lambda d: f"{d['rows']} rows x {d['cols']} cols"),
    ("spacing", lambda d: f"{d['spacing']} from {d['spacing_source']}" if d["spacing_mm"] else "unknown"),
    ("format", lambda d: d.get("format")),
    ("sop class", lambda d: d.get("sop_class")),
    ("transfer syntax", lambda d: d.get("transfer_syntax")),
    ("photometric", lambda d: d["photometric"] + (", shown inverted" if d.get("inverted") else "")),
    ("presentation LUT", lambda d: d.get("presentation_lut_shape")),
    ("bits", lambda d: _bits(d)),
    ("modality LUT", lambda d: d.get("modality_lut")),
    ("VOI", lambda d: d.get("voi")),
    ("modality", lambda d: d.get("modality")),
    ("body part", lambda d: d.get("body_part")),
    ("view", lambda d: d.get("view_position")),
    ("laterality", lambda d: d.get("laterality")),
    ("orientation", lambda d: "\\".join(d["orientation"]) if d["orientation"] else "absent (standard PA assumed)"),
)


def _bits(d: dict) -> str | None:
    stored, allocated = d.get("bits_stored"), d.get("bits_allocated")
    if stored and allocated:
        return f"{stored} stored / {allocated} allocated"
    return str(stored) if stored else None


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (a list, one object per file).")
@click.option(
    "--spacing",
    default=None,
    callback=spacing_option,
    help="Spacing in mm to use instead of the files' (MM or ROW,COL).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(1),
    default=None,
    help="Refuse films declaring more pixels (rows x cols) than this [default: 64,000,000].",
)
@click.pass_context
def info(
    ctx: click.Context, files: tuple[Path, ...], as_json: bool, spacing: str | None, max_pixels: int | None
) -> None:
    """Print facts about FILES: size, spacing and its source, photometric, bits, syntax, view.

    FILES are films or folders, searched recursively for films as medlung
    predict searches them.

    Exit status 0 when every file was read, 1 when some could not be (the
    others are still printed).
    """
    from medlung.io import DEFAULT_MAX_PIXELS, load_film

    verbose = is_verbose(ctx)
    if any(path.is_dir() for path in files):  # folders are searched as medlung predict searches them
        from medlung.pipeline.batch import collect_inputs

        files = tuple(collect_inputs(files))
        if not files:
            raise click.UsageError(f"no films found in the folders given. {films_counted()}")

    records, failed = [], 0
    for path in files:
        try:
            with quiet_warnings():
                film = load_film(path, spacing=spacing, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
        except MedlungError as exc:
            failed += 1
            report_exception(exc, verbose)
            records.append({"file": str(path), "status": "error", "error": str(exc)})
            if not as_json:  # the reason is on standard error (report_exception), once
                click.echo(f"{path}\n  {'status':<16} error (the reason is on standard error)\n")
            continue
        record = {"status": "ok", **film.describe()}
        records.append(record)
        if not as_json:
            click.echo(_human(record))
    if as_json:
        click.echo(json.dumps(records, indent=2))
    sys.exit(1 if failed else 0)


def _human(record: dict) -> str:
    lines = [record["file"]]
    for label, get in _FIELDS:
        value = get(record)
        if value:
            lines.append(f"  {label:<16} {value}")
    for warning in record["warnings"]:
        lines.append(f"  {'warning':<16} {warning}")
    return "\n".join(lines) + "\n"
