"""``medlung predict INPUT... -o OUT``: segment films and write masks, SEG, overlays and a report."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from medlung.cli.common import is_verbose, quiet_warnings, report_exception, spacing_option
from medlung.errors import MedlungError


def _formats(ctx, param, value: str) -> tuple[str, ...]:
    from medlung.inference.predict import FORMATS

    chosen = tuple(dict.fromkeys(v.strip().lower() for v in value.split(",") if v.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise click.BadParameter(f"choose from {','.join(FORMATS)} (got {value!r})")
    return chosen


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Output folder (created).")
@click.option("--bundle", type=click.Path(path_type=Path, exists=True),
              help="Model: a medlung bundle, a training run folder or a .pt checkpoint (default: the shipped bundle).")
@click.option("--format", "formats", default="seg,png,nifti,overlay", show_default=True, callback=_formats,
              help="Outputs to write, any of seg,png,nifti,overlay,mha (seg only for DICOM films; mha: the label "
                   "map as MetaImage).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option("--spacing", default=None, callback=spacing_option,
              help="Spacing in mm for every film (MM or ROW,COL); replaces the files'.")
@click.option("--roi-size", type=click.IntRange(32), default=None, help="Sliding-window size on the working grid.")
@click.option("--overlap", type=click.FloatRange(0, 0.95), default=0.25, show_default=True)
@click.option("--tta", is_flag=True, help="Average with the mirrored film (about 2x network time).")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Films processed at once.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs and report.")
@click.option("--seg-syntax", type=click.Choice(["lossless", "uncompressed"]), default="lossless", show_default=True)
@click.option("--send", default=None, metavar="AE@HOST:PORT", help="C-STORE each DICOM-SEG to this node.")
@click.option("--stow", default=None, metavar="URL", help="STOW-RS each DICOM-SEG to this DICOMweb URL.")
@click.option("--send-source", is_flag=True, help="Also send the film with its SEG.")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Refuse films declaring more pixels (rows x cols) than this [default: 64,000,000].")
@click.option("--include-identifiers", is_flag=True,
              help="Add patient ID and study UID to the report (off: only the DICOM-SEG carries identity).")
@click.pass_context
def predict(ctx, inputs, output, bundle, formats, device, spacing, roi_size, overlap, tta, workers, overwrite,
            seg_syntax, send, stow, send_source, max_pixels, include_identifiers) -> None:
    """Segment the lungs on INPUTS (files, folders searched recursively, or - for paths on stdin).

    Writes into OUT, for each input <stem>.<ext>: <stem>_seg.dcm (DICOM films),
    <stem>_lungs.png (0/255, native size, spacing in pHYs), <stem>_labels.nii.gz
    (0 background, 1 patient right lung, 2 patient left lung, spacing in the
    affine), <stem>_overlay.png, and one row per input in report.csv and
    report.json. Re-running skips films whose outputs exist (unless
    --overwrite); the earlier report is kept as report.<n>.csv. Exit status:
    0 all done, 1 some inputs failed, 2 usage error.
    """
    from medlung.inference.predict import PredictOptions, collect_inputs, predict_files
    from medlung.io import DEFAULT_MAX_PIXELS

    verbose = is_verbose(ctx)
    if send:
        from medlung.pacs import parse_destination

        try:
            parse_destination(send)
        except (MedlungError, ValueError) as exc:
            raise click.BadParameter(str(exc), param_hint="--send") from None
    paths = collect_inputs(inputs)
    if not paths:
        raise click.UsageError("no films found in the inputs given.")

    started = time.perf_counter()
    try:
        with quiet_warnings():
            from medlung.inference import Segmenter

            segmenter = Segmenter(bundle, device=device, roi_size=roi_size, overlap=overlap, tta=tta)
    except (MedlungError, ValueError) as exc:
        report_exception(exc, verbose)
        sys.exit(1)
    options = PredictOptions(formats=formats, overwrite=overwrite, spacing=spacing, seg_syntax=seg_syntax,
                             send=send, stow=stow, send_source=send_source, workers=workers,
                             max_pixels=max_pixels or DEFAULT_MAX_PIXELS, include_identifiers=include_identifiers,
                             extra_options={"tta": tta, "overlap": overlap, "roi_size": segmenter.roi_size})
    counts = {"ok": 0, "skipped": 0, "error": 0}
    with click.progressbar(length=len(paths), label="segmenting", file=sys.stderr,
                           show_pos=True, show_eta=True) as bar:
        def progress(row: dict) -> None:
            counts[row["status"]] += 1
            if row["status"] == "error":
                click.echo(f"\nerror: {row['error']}", err=True)
            bar.update(1)

        with quiet_warnings():
            report = predict_files(paths, output, segmenter, options, progress)
    seconds = time.perf_counter() - started
    failed = counts["error"]
    skipped = f", skipped {counts['skipped']} (outputs exist; --overwrite redoes them)" if counts["skipped"] else ""
    click.echo(f"done {counts['ok']}{skipped}, failed {failed}, {seconds:.1f} s; report: {report.csv_path}")
    sys.exit(1 if failed else 0)
