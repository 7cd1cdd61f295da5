"""``medlung predict --scheduler``: the client side of a Dask run (progress bar, counts, exit status)."""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import click

from medlung.cli.common import quiet_warnings, report_exception
from medlung.cli.progress import RowCounter
from medlung.errors import MedlungError
from medlung.logs import quieted


def predict_on_cluster(
    paths: list[Path], manifest: Path | None, output: Path, scheduler: str, settings, verbose: bool
) -> int:
    """Segment ``paths`` then the films of ``manifest`` on a Dask cluster; return the exit status.

    Parameters
    ----------
    paths : list of Path
        Films from the command line (already collected).
    manifest : Path or None
        Read lazily, after ``paths``.
    output : Path
        OUT, on storage every worker shares.
    scheduler : str
        ``local``, ``local:N`` or a scheduler address.
    settings : medlung.pipeline.settings.PredictSettings
        The run's settings, handed whole to every worker (``workers`` is the
        threads of each worker of a local cluster).
    verbose : bool
        Show Dask's own log lines and tracebacks.
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
            client, cluster = distributed.start_cluster(scheduler, threads_per_worker=settings.workers)
        except MedlungError as exc:
            report_exception(exc, verbose)
            return 1
        try:
            with (
                click.progressbar(
                    length=total, label="segmenting", file=sys.stderr, show_pos=True, show_eta=True
                ) as bar,
                quiet_warnings(),
            ):
                counter = RowCounter(bar, total=total)
                for row in distributed.predict(films, output, client=client, settings=settings):
                    counter(row)
        except MedlungError as exc:
            report_exception(exc, verbose)
            return 1
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return counter.finish(time.perf_counter() - started, Path(output) / "report.csv")
