"""``medlung predict INPUT... -o OUT``: segment films and write masks, SEG, overlays and a report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from medlung.cli.common import (
    fail,
    films_counted,
    is_verbose,
    max_memory_option,
    quiet_warnings,
    spacing_option,
)
from medlung.cli.security import tls_config, tls_options
from medlung.errors import MedlungError


def _formats(ctx, param, value: str) -> tuple[str, ...]:
    from medlung.pipeline.batch import FORMATS

    chosen = tuple(dict.fromkeys(v.strip().lower() for v in value.split(",") if v.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise click.BadParameter(
            f"{', '.join(repr(f) for f in unknown)} {'is' if len(unknown) == 1 else 'are'} not an output format; "
            f"choose from {','.join(FORMATS)} (got {value!r})"
        )
    if not chosen:
        raise click.BadParameter(f"choose from {','.join(FORMATS)} (got {value!r})")
    return chosen


@click.command()
@click.argument("inputs", nargs=-1)
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path, file_okay=False), help="Output folder (created)."
)
@click.option(
    "--bundle",
    type=click.Path(path_type=Path, exists=True),
    help="Model: a medlung bundle, a training run folder or a .pt checkpoint (default: the shipped bundle).",
)
@click.option(
    "--format",
    "formats",
    default="seg,png,nifti,overlay",
    show_default=True,
    callback=_formats,
    help="Outputs to write, any of seg,png,nifti,overlay,mha (seg only for DICOM films; mha: the label "
    "map as MetaImage).",
)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option(
    "--spacing",
    default=None,
    callback=spacing_option,
    help="Spacing in mm for every film (MM or ROW,COL); replaces the files'.",
)
@click.option("--roi-size", type=click.IntRange(32), default=None, help="Sliding-window size on the working grid.")
@click.option(
    "--overlap",
    type=click.FloatRange(0, 0.95),
    default=None,
    help="Sliding-window overlap, 0-0.95 [default: the model's, 0.25].",
)
@click.option(
    "--lungs",
    type=click.Choice(["field", "anatomical"]),
    default="field",
    show_default=True,
    help="Lung convention: field (the radiographic lung field, bounded by heart and mediastinum) or "
    "anatomical (the whole lung, behind the heart too). Opacified lung is lung in both.",
)
@click.option("--tta", is_flag=True, help="Average with the mirrored film (about 2x network time).")
@click.option(
    "--orientation-fix",
    is_flag=True,
    help="Films without PatientOrientation (PNG, no tag) that look mirrored or turned are segmented as "
    "detected (up to 3x network time on those films); the report's orientation_check says what "
    "was seen.",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=1,
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
    type=click.Choice(["uncompressed", "jpeg2000", "lossless"]),
    default="uncompressed",
    show_default=True,
    help="DICOM-SEG transfer syntax. uncompressed: Explicit VR Little Endian, opened by every client tested "
    "(OHIF via Orthanc, dcmqi, highdicom). jpeg2000 (older name: lossless): JPEG 2000 Lossless, "
    "hundreds of times smaller, for archives read with highdicom/pydicom only: Orthanc cannot serve it and Orthanc "
    "with orthanc-gdcm crashes on it, so it cannot be combined with --send/--stow.",
)
@click.option("--send", default=None, metavar="AE@HOST:PORT", help="C-STORE each DICOM-SEG to this node.")
@tls_options(
    "Our certificate (PEM) for --send over DICOM TLS, for a PACS that asks for one.",
    "CA bundle (PEM) the --send PACS's certificate must be signed by (default: the system's CAs). "
    "Any --tls-* option turns DICOM TLS on for --send.",
)
@click.option(
    "--stow",
    default=None,
    metavar="URL",
    help="STOW-RS each DICOM-SEG to this DICOMweb URL; credentials from $MEDLUNG_STOW_TOKEN[_FILE] or "
    "$MEDLUNG_STOW_USER with $MEDLUNG_STOW_PASSWORD[_FILE], never from the command line.",
)
@click.option("--send-source", is_flag=True, help="Also send the film with its SEG.")
@click.option(
    "--max-pixels",
    type=click.IntRange(1),
    default=None,
    help="Refuse films declaring more pixels (rows x cols) than this [default: 64,000,000].",
)
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
@click.option(
    "--qc-fail",
    is_flag=True,
    help="Films the quality check flags (not a chest, lateral, implausible lungs ...) become errors and "
    "write nothing (default: written, flagged in the report, the SEG and the log).",
)
@click.pass_context
def predict(
    ctx,
    inputs,
    output,
    bundle,
    formats,
    device,
    spacing,
    roi_size,
    overlap,
    lungs,
    tta,
    orientation_fix,
    workers,
    max_memory,
    overwrite,
    seg_syntax,
    send,
    tls_cert,
    tls_key,
    tls_ca,
    stow,
    send_source,
    max_pixels,
    include_identifiers,
    scheduler,
    manifest,
    qc_fail,
) -> None:
    """Segment the lungs on INPUTS (files, folders searched recursively, or - for paths on stdin).

    Writes into OUT, for each input <stem>.<ext>: <stem>_seg.dcm (DICOM films),
    <stem>_lungs.png (0/255, native size, spacing in pHYs), <stem>_labels.nii.gz
    (0 background, 1 patient right lung, 2 patient left lung, spacing in the
    affine), <stem>_overlay.png, and one row per input in report.csv and
    report.json. Re-running skips films whose outputs exist (unless
    --overwrite); the earlier report is kept as report.<n>.csv. Each film gets
    a quality check (report columns qc and qc_reasons); a flagged film is
    written and says so, or fails with --qc-fail. Exit status: 0 all done,
    1 some inputs failed, 2 usage error.

    With --scheduler the films are segmented by Dask workers, each loading
    the model once; with local:N, --workers is the threads of each worker.
    """
    # TLS files and DICOMweb credentials: checked before the heavy imports
    send_tls = tls_config(tls_cert, tls_key, tls_ca)
    if send_tls is not None and not send:
        raise click.UsageError("--tls-cert/--tls-key/--tls-ca apply to --send: give --send AE@HOST:PORT too.")
    if stow:
        from medlung.pacs.send import check_stow_url, credentials_from_environment, plain_http_warning

        try:
            warning = plain_http_warning(check_stow_url(stow), credentials_from_environment())
        except MedlungError as exc:
            raise click.BadParameter(str(exc), param_hint="--stow") from None
        if warning:
            click.echo(f"warning: {warning}", err=True)
    from medlung.io import DEFAULT_MAX_PIXELS
    from medlung.pipeline.batch import PredictOptions, collect_inputs, predict_files

    verbose = is_verbose(ctx)
    if seg_syntax != "uncompressed" and (send or stow) and "seg" in formats:
        raise click.BadParameter(
            "a JPEG 2000 DICOM-SEG is not sent to a PACS (Orthanc cannot serve it and crashes "
            "with orthanc-gdcm); drop --seg-syntax or --send/--stow.",
            param_hint="--seg-syntax",
        )
    if send:
        from medlung.pacs import parse_destination

        try:
            parse_destination(send)
        except (MedlungError, ValueError) as exc:
            raise click.BadParameter(str(exc), param_hint="--send") from None
    missing = [item for item in inputs if item != "-" and not Path(item).exists()]
    if missing:  # a usage error like an empty folder (docs/cli.md, "Exit status"); a film that fails is exit 1
        raise click.UsageError(f"{', '.join(missing)}: does not exist. Check the path; nothing was segmented.")
    if not inputs and manifest is None:
        raise click.UsageError("give INPUT files or folders, or --manifest FILE.")
    if manifest is not None and not manifest.is_file():
        raise click.BadParameter(f"{manifest} is not a file.", param_hint="--manifest")
    if str(device).strip().lower() not in ("auto", "cpu") and (scheduler is None or scheduler.startswith("local")):
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

        sys.exit(
            predict_on_cluster(
                paths,
                manifest,
                output,
                scheduler,
                bundle,
                device,
                roi_size,
                overlap,
                tta,
                workers,
                PredictOptions(
                    formats=formats,
                    overwrite=overwrite,
                    spacing=spacing,
                    seg_syntax=seg_syntax,
                    send=send,
                    send_tls=send_tls,
                    stow=stow,
                    send_source=send_source,
                    max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
                    include_identifiers=include_identifiers,
                ),
                verbose,
                lungs=lungs,
            )
        )
    if manifest is not None:
        from medlung.services.distributed import read_manifest

        paths = collect_inputs([*paths, *read_manifest(manifest)])

    started = time.perf_counter()
    try:
        with quiet_warnings():
            from medlung.inference import Segmenter

            segmenter = Segmenter(
                bundle,
                device=device,
                roi_size=roi_size,
                overlap=overlap,
                tta=tta,
                lungs=lungs,
                fix_orientation=orientation_fix,
            )
    except (MedlungError, ValueError) as exc:
        fail(exc, verbose)
    options = PredictOptions(
        formats=formats,
        overwrite=overwrite,
        spacing=spacing,
        seg_syntax=seg_syntax,
        send=send,
        send_tls=send_tls,
        stow=stow,
        send_source=send_source,
        workers=workers,
        max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
        include_identifiers=include_identifiers,
        qc_fail=qc_fail,
        max_memory=max_memory,
    )
    counts = {"ok": 0, "skipped": 0, "error": 0, "flagged": 0, "uncalibrated": 0}
    log = _ProgressLines(len(paths)) if not sys.stderr.isatty() else None  # a bar draws nothing without a terminal
    with click.progressbar(length=len(paths), label="segmenting", file=sys.stderr, show_pos=True, show_eta=True) as bar:

        def progress(row: dict) -> None:
            counts[row["status"]] += 1
            if row["status"] == "error":
                click.echo(f"\nerror: {row['error']}", err=True)
            elif row.get("qc") == "flagged":
                counts["flagged"] += 1
                click.echo(f"\nquality flagged: {row['file']}: {'; '.join(row['qc_reasons'])}", err=True)
            if row["status"] == "ok" and row.get("calibrated") is False:
                counts["uncalibrated"] += 1
            bar.update(1)
            if log is not None:
                log(counts)

        with quiet_warnings():
            report = predict_files(paths, output, segmenter, options, progress)
    seconds = time.perf_counter() - started
    failed = counts["error"]
    skipped = f", skipped {counts['skipped']} (outputs exist; --overwrite redoes them)" if counts["skipped"] else ""
    flagged = f" ({counts['flagged']} flagged by the quality check)" if counts["flagged"] else ""
    if counts["uncalibrated"] and not spacing:
        click.echo(
            f"{counts['uncalibrated']} film(s) give no pixel spacing: their areas are in px, not cm² "
            "(columns *_px); if you know a film's spacing, give it with --spacing MM (or ROW,COL).",
            err=True,
        )
    click.echo(f"done {counts['ok']}{flagged}{skipped}, failed {failed}, {seconds:.1f} s; report: {report.csv_path}")
    sys.exit(1 if failed else 0)


class _ProgressLines:
    """Progress for logs (stderr is not a terminal): ``[done/total] ...`` every tenth of the films or every minute.

    Parameters
    ----------
    total : int
        Films in the batch.
    every_s : float
        Longest gap between two lines, seconds.
    """

    def __init__(self, total: int, every_s: float = 60.0) -> None:
        self.total, self.every_s = total, every_s
        self.step = max(1, -(-total // 10))
        self.started = self.last = time.perf_counter()

    def __call__(self, counts: dict) -> None:
        done, now = counts["ok"] + counts["skipped"] + counts["error"], time.perf_counter()
        if done % self.step and done != self.total and now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.started
        eta = elapsed / done * (self.total - done)
        click.echo(
            f"[{done}/{self.total}] ok {counts['ok']}, skipped {counts['skipped']}, failed {counts['error']}; "
            f"{elapsed:.0f} s elapsed, about {eta:.0f} s left",
            err=True,
        )
