"""``medlung predict --scheduler``: the client side of a Dask run (progress bar, counts, exit status)."""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import click

from medlung.cli.common import quiet_warnings, report_exception
from medlung.errors import MedlungError
from medlung.logs import quieted


def predict_on_cluster(
    paths: list[Path],
    manifest: Path | None,
    output: Path,
    scheduler: str,
    bundle,
    device: str,
    roi_size,
    overlap,
    tta: bool,
    threads: int,
    options,
    verbose: bool,
    lungs: str = "field",
) -> int:
    """Segment ``paths`` then the films of ``manifest`` on a Dask cluster; return the exit status.

    Parameters
    ----------
    paths : list of Path
        Films from the command line (already collected).
    manifest : Path or None
        Read lazily, after ``paths``.
    scheduler : str
        ``local``, ``local:N`` or a scheduler address.
    threads : int
        Threads per worker of a local cluster.
    options : medlung.pipeline.batch.PredictOptions
        What to write.
    """
    quiet = () if verbose else ("distributed", "tornado")  # Dask's heartbeats and nanny restarts: not the user's
    if quiet:
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")  # worker processes inherit it
    with quieted(quiet):  # for this run only: the levels are put back on return
        from medlung.services import distributed

        started = time.perf_counter()
        try:
            films = iter(paths)
            total = len(paths)
            if manifest is not None:
                films = itertools.chain(paths, distributed.read_manifest(manifest))
                total += distributed.count_manifest(manifest)  # one streaming pass, for the progress bar
            client, cluster = distributed.start_cluster(scheduler, threads_per_worker=threads)
        except MedlungError as exc:
            report_exception(exc, verbose)
            return 1
        counts = {"ok": 0, "skipped": 0, "error": 0}
        try:
            with (
                click.progressbar(
                    length=total, label="segmenting", file=sys.stderr, show_pos=True, show_eta=True
                ) as bar,
                quiet_warnings(),
            ):
                for row in distributed.predict(
                    films,
                    output,
                    client=client,
                    model=bundle,
                    device=device,
                    roi_size=roi_size,
                    overlap=overlap,
                    tta=tta,
                    options=options,
                    lungs=lungs,
                ):
                    counts[row["status"]] = counts.get(row["status"], 0) + 1
                    if row["status"] == "error":
                        click.echo(f"\nerror: {row['error']}", err=True)
                    bar.update(1)
        except MedlungError as exc:
            report_exception(exc, verbose)
            return 1
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        seconds = time.perf_counter() - started
        skipped = f", skipped {counts['skipped']} (outputs exist; --overwrite redoes them)" if counts["skipped"] else ""
        click.echo(
            f"done {counts['ok']}{skipped}, failed {counts['error']}, {seconds:.1f} s; "
            f"report: {Path(output) / 'report.csv'}"
        )
        return 1 if counts["error"] else 0
