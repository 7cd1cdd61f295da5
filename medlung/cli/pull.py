"""``medlung pull`` / ``medlung predict --from``: studies from a PACS, segmented, the results sent back.

``medlung pull`` is ``medlung predict`` whose INPUTS are StudyInstanceUIDs on
the PACS given by ``--from`` (``AE@HOST:PORT`` or a DICOMweb URL); every
predict option applies (outputs, model, ``--send`` / ``--stow``). The
options below choose the studies and how they are fetched; they are read from
the click context (:func:`pull_arguments`) so that ``predict`` keeps its
signature.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click

from medlung.errors import MedlungError

#: What ``--retrieve`` accepts.
RETRIEVE_MODES = ("get", "move")
_META = "medlung.pull"


def _keep(ctx: click.Context, param: click.Parameter, value):
    ctx.meta.setdefault(_META, {})[param.name] = value
    return value


def pull_options(command):
    """Add the pull options to a command (their values go to the context, see :func:`pull_arguments`)."""
    file = click.Path(path_type=Path, dir_okay=False, exists=True)
    options = [
        click.option(
            "--from",
            "source",
            metavar="AE@HOST:PORT|URL",
            help="Pull the studies from this PACS (DIMSE C-FIND + C-GET/C-MOVE, or DICOMweb QIDO-RS + WADO-RS at an "
            "http(s) URL): INPUTS are then StudyInstanceUIDs. DICOMweb credentials as for --stow.",
        ),
        click.option(
            "--accession",
            "accessions",
            multiple=True,
            metavar="NUMBER",
            help="Pull the studies with this AccessionNumber (repeatable).",
        ),
        click.option("--study-list", type=file, metavar="FILE", help="StudyInstanceUIDs to pull, one a line."),
        click.option("--accession-list", type=file, metavar="FILE", help="AccessionNumbers to pull, one a line."),
        click.option(
            "--query",
            metavar="KEY=VALUE,...",
            help="Pull the studies matching these study-level keys, e.g. PatientID=123,ModalitiesInStudy=CR.",
        ),
        click.option(
            "--modality",
            "modalities",
            default="CR,DX",
            show_default=True,
            help="Series of these modalities are fetched.",
        ),
        click.option(
            "--retrieve",
            type=click.Choice(RETRIEVE_MODES),
            default="get",
            show_default=True,
            help="DIMSE: C-GET (the films come back on medlung's association) or C-MOVE to --move-ae.",
        ),
        click.option("--move-ae", metavar="AE", help="C-MOVE: the AE title medlung receives as (known to the PACS)."),
        click.option(
            "--move-port", type=click.IntRange(1, 65535), help="C-MOVE: the port medlung listens on meanwhile."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    for param in command.__click_params__[-len(options) :]:
        param.expose_value, param.callback = False, _keep
    return command


@dataclass(frozen=True)
class PullArguments:
    """The pull options of one command line."""

    source: str
    accessions: tuple[str, ...]
    study_list: Path | None
    accession_list: Path | None
    query: str | None
    modalities: str
    retrieve: str
    move_ae: str | None
    move_port: int | None


def pull_arguments(ctx: click.Context, required: bool = False) -> PullArguments | None:
    """The pull options given, or None when there is no ``--from`` (a usage error when ``required``)."""
    values = ctx.meta.get(_META, {})
    if not values.get("source"):
        flags = {"accessions": "--accession", "study_list": "--study-list", "accession_list": "--accession-list"}
        used = [flag for name, flag in {**flags, "query": "--query"}.items() if values.get(name)]
        if required or used:
            raise click.UsageError(f"{' '.join(used) or 'medlung pull'} needs --from AE@HOST:PORT or --from URL.")
        return None
    return PullArguments(**{name: values.get(name) for name in PullArguments.__dataclass_fields__})


def check_pull(arguments: PullArguments, inputs, manifest, scheduler, send_tls):
    """The source and study selection of the arguments; usage errors as click's (nothing is asked of the PACS yet)."""
    from medlung.pacs.retrieve import open_source, parse_query
    from medlung.pipeline.pull import selection_from_lists

    if manifest is not None or scheduler is not None:
        raise click.UsageError("--from pulls studies into this process: drop --manifest/--scheduler.")
    try:
        selection = selection_from_lists(
            inputs,
            arguments.accessions,
            arguments.study_list,
            arguments.accession_list,
            parse_query(arguments.query),
            arguments.modalities.split(","),
        )
        source = open_source(
            arguments.source,
            retrieve=arguments.retrieve,
            move_ae=arguments.move_ae,
            move_port=arguments.move_port,
            tls=send_tls if not str(arguments.source).lower().startswith("http") else None,
        )
    except (MedlungError, ValueError, OSError) as exc:
        raise click.BadParameter(str(exc), param_hint="--from/--query") from None
    if not selection:
        raise click.UsageError(
            "name the studies: StudyInstanceUIDs as INPUTS, --accession, --study-list, --accession-list or --query."
        )
    return source, selection


def run_pull(source, selection, output: Path, settings, verbose: bool) -> int:
    """Pull, segment and send; print a line per study and the films' progress; the exit status."""
    from contextlib import ExitStack

    from medlung.cli.common import fail, quiet_warnings
    from medlung.cli.progress import RowCounter
    from medlung.pipeline.pull import pull_studies
    from medlung.pipeline.settings import load_segmenter

    def on_study(row: dict) -> None:
        what = row["study_instance_uid"] or row["accession_number"] or "query"
        films = f", {row['films']} films ({row['fetched'] or 0} fetched)" if row.get("films") is not None else ""
        click.echo(
            f"study {what}: {row['status']}{films}" + (f": {row['error']}" if row.get("error") else ""), err=True
        )

    counters: list[RowCounter] = []

    def on_films(count: int) -> None:
        bar = stack.enter_context(
            click.progressbar(length=count, label="segmenting", file=sys.stderr, show_pos=True, show_eta=True)
        )
        counters.append(RowCounter(bar, total=count))

    with ExitStack() as stack:
        stack.enter_context(quiet_warnings())
        try:
            segmenter = load_segmenter(settings)
            stack.enter_context(source)
            result = pull_studies(
                source,
                selection,
                output,
                segmenter,
                settings,
                on_study=on_study,
                on_film=lambda row: counters[0](row),
                on_films=on_films,
            )
        except (MedlungError, ValueError) as exc:
            fail(exc, verbose)
    counts = {status: sum(r["status"] == status for r in result.studies) for status in ("ok", "skipped", "empty")}
    films = counters[0].counts if counters else {"ok": 0, "skipped": 0, "error": 0}
    click.echo(
        f"studies: done {counts['ok']}, skipped {counts['skipped']} (finished earlier), empty {counts['empty']}, "
        f"failed {result.failed}; films: done {films['ok']}, skipped {films['skipped']}, failed {films['error']}; "
        f"report: {result.report.csv_path}"
    )
    return 1 if result.failed else 0
