"""``medlung export RUN -o BUNDLE_DIR``: turn a training run into a MONAI Bundle."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from medlung.cli.common import is_verbose, quiet_warnings, report_exception
from medlung.errors import MedlungError


@click.command()
@click.argument("run", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Bundle folder to create (for example bundles/medlung_cxr_lung).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle folder (its changelog is kept).")
@click.option(
    "--version",
    "version",
    default=None,
    metavar="X.Y.Z",
    help="Bundle version [default: 0.1.0, or the replaced bundle's with the patch number raised].",
)
@click.pass_context
def export(ctx: click.Context, run: Path, output: Path, overwrite: bool, version: str | None) -> None:
    """Export the best model of training RUN (best.pt, config.json, summary.json) as a MONAI Bundle.

    Writes models/model.pt (state dict), models/model.ts (TorchScript,
    checked against the network), configs/ (metadata.json with its
    schema.json, inference.json, evaluate.json, train.json,
    multi_gpu_train.json, logging.conf), docs/README.md (model card) and
    LICENSE. A run still training (no summary.json) gives a bundle marked
    provisional. An existing bundle is refused unless --overwrite.
    """
    verbose = is_verbose(ctx)
    try:
        with quiet_warnings():
            import json

            from medlung.bundle import export_bundle

            bundle = export_bundle(run, output, overwrite=overwrite, version=version)
            meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    except (MedlungError, ValueError) as exc:
        report_exception(exc, verbose)
        sys.exit(1)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in meta.get("eval_metrics", {}).items()) or "no metrics"
    state = " (provisional: training still running)" if meta["training"]["provisional"] else ""
    click.echo(f"exported {run} -> {bundle}: version {meta['version']}{state}; {metrics}")
