"""``medlung predict INPUT... -o OUT``: segment films and write masks, SEG, overlays and a report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from medlung import defaults
from medlung.cli.common import fail, films_counted, is_verbose, max_memory_option, quiet_warnings
from medlung.cli.progress import RowCounter
from medlung.cli.pull import check_pull, pull_arguments, pull_options, run_pull
from medlung.cli.security import tls_config, tls_options
from medlung.cli.segmenting import build_settings, format_option, model_options, user_spacing_option
from medlung.errors import MedlungError


@click.command()
@click.argument("inputs", nargs=-1)
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path, file_okay=False), help="Output folder (created)."
)
@format_option
@user_spacing_option
@model_options
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=defaults.DEFAULT_WORKERS,
    show_default=True,
    help="Films processed at once (threads). With 1, the next film is read and the last one's outputs "
    "written while one is segmented.",
)
@max_memory_option(
    "the batch", "--workers films run at once only while they fit; a film that alone needs more is an error."
)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs and report.")
@click.option(
    "--seg-syntax",
    type=click.Choice(list(defaults.SEG_SYNTAXES)),
    default=defaults.DEFAULT_SEG_SYNTAX,
    show_default=True,
    help="DICOM-SEG transfer syntax. uncompressed: Explicit VR Little Endian, opened by every client tested "
    "(OHIF via Orthanc, dcmqi, highdicom). jpeg2000 (older name: lossless): JPEG 2000 Lossless, "
    "hundreds of times smaller, for archives read with highdicom/pydicom only: Orthanc cannot serve it and Orthanc "
    "with orthanc-gdcm crashes on it, so it cannot be combined with --send/--stow.",
)
@click.option("--send", default=None, metavar="AE@HOST:PORT", help="C-STORE each DICOM-SEG and SR to this node.")
@tls_options(
    "Our certificate (PEM) for --send over DICOM TLS, for a PACS that asks for one.",
    "CA bundle (PEM) the --send PACS's certificate must be signed by (default: the system's CAs). "
    "Any --tls-* option turns DICOM TLS on for --send.",
)
@click.option(
    "--stow",
    default=None,
    metavar="URL",
    help="STOW-RS each DICOM-SEG and SR to this DICOMweb URL; credentials from $MEDLUNG_STOW_TOKEN[_FILE] or "
    "$MEDLUNG_STOW_USER with $MEDLUNG_STOW_PASSWORD[_FILE], never from the command line.",
)
@click.option("--send-source", is_flag=True, help="Also send the film with its SEG and SR.")
@click.option(
    "--include-identifiers",
    is_flag=True,
    help="Add patient ID and study UID to the report (off: only the DICOM-SEG carries identity).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS|local[:N]",
    help="Run on a Dask cluster: a scheduler address (tcp://HOST:8786) or local:N worker processes "
    "(needs medlung[dask]; OUT must be storage every worker shares).",
)
@click.option(
    "--manifest",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Films listed in a file (one path per line, or a CSV with a 'path' column), read lazily.",
)
@pull_options
@click.pass_context
def predict(ctx, inputs, output, tls_cert, tls_key, tls_ca, scheduler, manifest, **options) -> None:
    """Segment the lungs on INPUTS (files, folders searched recursively, or - for paths on stdin).

    Writes into OUT, for each input <stem>.<ext>: <stem>_seg.dcm and <stem>_sr.dcm
    (DICOM films: the lungs as DICOM-SEG, their measurements as DICOM SR), <stem>_lungs.png (0/255, native size, spacing in pHYs), <stem>_labels.nii.gz
    (0 background, 1 patient right lung, 2 patient left lung, spacing in the
    affine), <stem>_overlay.png, and one row per input in report.csv and
    report.json. Re-running skips films whose outputs exist (unless
    --overwrite); the earlier report is kept as report.<n>.csv. Each film gets
    a quality check (report columns qc and qc_reasons); a flagged film is
    written and says so, or fails with --qc-fail. Exit status: 0 all done,
    1 some inputs failed, 2 usage error.

    With --scheduler the films are segmented by Dask workers, each loading
    the model once; with local:N, --workers is the threads of each worker.

    With --from, INPUTS are StudyInstanceUIDs on that PACS (or give
    --accession, --study-list, --accession-list, --query): their CR/DX films
    are fetched into OUT/films and segmented, the results sent with
    --send/--stow (see medlung pull).
    """
    # TLS files and DICOMweb credentials: checked before the heavy imports
    send_tls = tls_config(tls_cert, tls_key, tls_ca)
    pulling = pull_arguments(ctx, required=ctx.info_name == "pull")
    if send_tls is not None and not options["send"] and not (pulling and "@" in pulling.source):
        raise click.UsageError("--tls-cert/--tls-key/--tls-ca apply to --send: give --send AE@HOST:PORT too.")
    if options["stow"]:
        from medlung.pacs.send import check_stow_url, credentials_from_environment, plain_http_warning

        try:
            warning = plain_http_warning(check_stow_url(options["stow"]), credentials_from_environment())
        except MedlungError as exc:
            raise click.BadParameter(str(exc), param_hint="--stow") from None
        if warning:
            click.echo(f"warning: {warning}", err=True)
    if options["send"]:
        from medlung.pacs import parse_destination

        try:
            parse_destination(options["send"])
        except (MedlungError, ValueError) as exc:
            raise click.BadParameter(str(exc), param_hint="--send") from None
    # the one settings object every path below receives whole (local, --workers, --scheduler)
    settings = build_settings(options, send_tls=send_tls)
    from medlung.pipeline.batch import collect_inputs

    verbose = is_verbose(ctx)
    if pulling is not None:  # INPUTS are studies on a PACS
        source, selection = check_pull(pulling, inputs, manifest, scheduler, send_tls)
        sys.exit(run_pull(source, selection, output, settings, verbose))
    missing = [item for item in inputs if item != "-" and not Path(item).exists()]
    if missing:  # a usage error like an empty folder (docs/cli.md, "Exit status"); a film that fails is exit 1
        raise click.UsageError(f"{', '.join(missing)}: does not exist. Check the path; nothing was segmented.")
    if not inputs and manifest is None:
        raise click.UsageError("give INPUT files or folders, or --manifest FILE.")
    if manifest is not None and not manifest.is_file():
        raise click.BadParameter(f"{manifest} is not a file.", param_hint="--manifest")
    device = str(settings.device).strip().lower()
    if device not in ("auto", "cpu") and (scheduler is None or scheduler.startswith("local")):
        from medlung.networks.running import resolve_device  # before any film or progress line (a remote cluster's

        #                                                      workers may have the CUDA this machine lacks)
        try:
            resolve_device(device)
        except MedlungError as exc:
            raise click.BadParameter(str(exc), param_hint="--device") from None
    paths = collect_inputs(inputs)
    if not paths and manifest is None:
        raise click.UsageError(f"no films found in the inputs given. {films_counted()}")
    if scheduler is not None:
        from medlung.cli.predict_dask import predict_on_cluster

        sys.exit(predict_on_cluster(paths, manifest, output, scheduler, settings, verbose))
    if manifest is not None:
        from medlung.services.distributed import read_manifest

        paths = collect_inputs([*paths, *read_manifest(manifest)])
    sys.exit(predict_here(paths, output, settings, verbose))


def predict_here(paths: list[Path], output: Path, settings, verbose: bool) -> int:
    """Segment ``paths`` in this process (``--workers`` threads) with a progress bar; return the exit status."""
    from medlung.pipeline.batch import predict_files
    from medlung.pipeline.settings import load_segmenter

    started = time.perf_counter()
    try:
        with quiet_warnings():
            segmenter = load_segmenter(settings)
    except (MedlungError, ValueError) as exc:
        fail(exc, verbose)
    with click.progressbar(length=len(paths), label="segmenting", file=sys.stderr, show_pos=True, show_eta=True) as bar:
        counter = RowCounter(bar, total=len(paths), spacing_given=settings.spacing is not None)
        with quiet_warnings():
            report = predict_files(paths, output, segmenter, settings, counter)
    return counter.finish(time.perf_counter() - started, report.csv_path)


#: ``medlung pull``: ``predict`` with --from required and StudyInstanceUIDs as INPUTS (same options).
pull = click.Command(
    "pull",
    params=predict.params,
    callback=predict.callback,
    help="""Pull studies from a PACS (--from), segment their CR/DX films and send the results back.

    INPUTS are StudyInstanceUIDs; or name the studies with --accession, --study-list, --accession-list or --query
    (study-level keys, e.g. PatientID=123,ModalitiesInStudy=CR). The films are fetched into OUT/films over
    DICOMweb (--from URL: QIDO-RS + WADO-RS) or DIMSE (--from AE@HOST:PORT: C-FIND + C-GET, or C-MOVE to
    --move-ae on --move-port), segmented as medlung predict does (every predict option applies), and the SEG
    and SR sent with --send/--stow. A second run fetches nothing already done: OUT/pull-state.json lists the
    finished studies; OUT/pull.csv has one row per study. Exit status 1 when a study failed (the others are done).
    """,
)
