"""``medlung predict`` on a Dask cluster: archives of films segmented where they lie.

The client names each film's outputs (the same names as a plain ``medlung
predict``), submits one task per film in bounded batches, and writes the rows
into ``report.csv`` / ``report.json`` as they come back. Each worker process
loads the model once (:class:`ModelPlugin`) and writes the film's outputs
itself, atomically, into the output folder all workers share. A worker killed
mid-film loses nothing: Dask runs the task again elsewhere, and the re-run
writes only the outputs that are not there yet. A bad film is an error row.

Needs the optional extra ``medlung[dask]`` (``dask[distributed]``).

Examples
--------
>>> from dask.distributed import Client                          # doctest: +SKIP
>>> from medlung.services import distributed                     # doctest: +SKIP
>>> client = Client("tcp://scheduler:8786")                      # doctest: +SKIP
>>> for row in distributed.predict(distributed.read_manifest("films.txt"), "out", client=client):
...     print(row["file"], row["status"])                         # doctest: +SKIP
"""

from __future__ import annotations

import csv
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from medlung.errors import MedlungError
from medlung.pipeline.batch import segment_one
from medlung.pipeline.settings import PredictSettings, load_segmenter
from medlung.writers.naming import OutputNamer

#: Name of the worker plugin that holds the model (a hash of the model settings is appended).
PLUGIN_NAME = "medlung-model"

_WorkerPlugin: type
try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # the [dask] extra is not installed: predict() says so
    _WorkerPlugin = object

_cache: dict[tuple, object] = {}
_cache_lock = threading.Lock()


class DaskMissingError(MedlungError):
    """Dask is not installed, or the scheduler cannot be reached."""


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise DaskMissingError(
            "--scheduler needs Dask, which is not installed", hint="Install it with: pip install 'medlung[dask]'."
        ) from None
    return distributed


# ----------------------------------------------------------------------------------------------- inputs


def read_manifest(path: str | Path) -> Iterator[Path]:
    """Film paths from a manifest, read one line at a time (never the whole file).

    Parameters
    ----------
    path : str or Path
        A text file with one path per line (blank lines and lines starting
        with ``#`` are skipped), or a CSV file whose header has a ``path``
        column. Relative paths are taken from the manifest's folder.

    Yields
    ------
    Path
        Absolute paths, in the manifest's order.
    """
    path = Path(path)
    base = path.parent.absolute()
    try:
        handle = open(path, newline="")
    except OSError as exc:
        raise MedlungError(
            f"manifest cannot be read ({exc.strerror})",
            path,
            "Give a text file with one path per line, or a CSV with a 'path' column.",
        ) from None
    with handle:
        first = handle.readline()
        header = next(csv.reader([first]), [])
        names = [name.strip().lower() for name in header]
        lines: Iterable[str]
        if "path" in names:  # a CSV header; otherwise the first line is a path too
            column = names.index("path")
            lines = (row[column] for row in csv.reader(handle) if len(row) > column)
        else:
            lines = itertools.chain([first], handle)
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                yield base / line


def count_manifest(path: str | Path) -> int:
    """Number of films in a manifest (one streaming pass)."""
    return sum(1 for _ in read_manifest(path))


# ----------------------------------------------------------------------------------------------- workers


class ModelPlugin(_WorkerPlugin):
    """Dask worker plugin: loads the model once in each worker process, when the worker starts.

    Parameters
    ----------
    settings : medlung.pipeline.settings.PredictSettings
        The run's settings; the model is the one they describe.
    """

    idempotent = True  # registering the same model again loads nothing

    def __init__(self, settings: PredictSettings) -> None:
        self.settings = settings

    def setup(self, worker=None) -> None:
        worker_segmenter(self.settings)

    def teardown(self, worker=None) -> None:
        pass

    def transition(self, key, start, finish, **kwargs) -> None:
        pass


def worker_segmenter(settings: PredictSettings):
    """The process's :class:`~medlung.inference.Segmenter` for these settings (loaded once per process and model)."""
    key = settings.model_key()
    with _cache_lock:
        if key not in _cache:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _cache[key] = load_segmenter(settings)
        return _cache[key]


def segment_task(path: str, prefix: str, settings: PredictSettings) -> dict:
    """One film on a worker: segment it and write its outputs (:func:`medlung.pipeline.batch.segment_one`).

    Never raises for a bad film: the row says ``error``.
    """
    import warnings

    row: dict = {"file": path, "status": "error"}
    try:
        segmenter = worker_segmenter(settings)  # its settings enter the SEG UIDs (medlung.uids.output_options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = segment_one(Path(path), Path(prefix), segmenter, settings)
    except Exception as exc:  # a film must never fail the cluster job
        row["error"] = str(exc) if isinstance(exc, MedlungError) else f"{path}: unexpected {type(exc).__name__}: {exc}"
    row["worker"] = _worker_address()
    return row


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------- client


def predict(
    paths: Iterable[str | Path],
    out: str | Path,
    client=None,
    settings: PredictSettings | None = None,
    max_in_flight: int | None = None,
    progress: Callable[[dict], None] | None = None,
    check_paths: bool = True,
) -> Iterator[dict]:
    """Segment ``paths`` on a Dask cluster into ``out``; yield each film's report row as it finishes.

    The rows are also written to ``out/report.csv`` (a line per film, as it
    comes) and ``out/report.json`` (complete when the iterator ends). Rows come
    in the order films finish.

    Parameters
    ----------
    paths : iterable of str or Path
        Film files, consumed lazily (a generator such as :func:`read_manifest`
        is never turned into a list).
    out : str or Path
        Output folder, on storage every worker can write (created).
    client : distributed.Client, optional
        The cluster (default: the current client, :func:`distributed.default_client`).
    settings : medlung.pipeline.settings.PredictSettings, optional
        How to segment and what to write, handed whole to every worker (the
        model path as the workers see it; ``workers`` is ignored: the cluster
        decides). Default: ``PredictSettings()``.
    max_in_flight : int, optional
        Films submitted and not yet reported, at most (default: 4 per worker
        thread, at least 8). Bounds the client's and the scheduler's memory.
    progress : callable, optional
        Called with each row (after it is in the report).
    check_paths : bool
        Report files this machine cannot see as errors without sending them
        to the cluster (the client must then see the workers' storage, as
        it does for ``local`` clusters and shared file systems); ``False``
        sends every path.

    Yields
    ------
    dict
        Report rows (``status`` ``ok``, ``skipped`` or ``error``).
    """
    distributed = _import_distributed()
    from medlung.writers.report import StreamingReport

    client = client or distributed.default_client()
    settings = settings or PredictSettings()
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    import hashlib

    name = f"{PLUGIN_NAME}-{hashlib.sha1(repr(settings.model_key()).encode()).hexdigest()[:12]}"
    client.register_plugin(ModelPlugin(settings), name=name)
    if max_in_flight is None:
        threads = sum(client.nthreads().values()) or 1
        max_in_flight = max(8, 4 * threads)
    namer = OutputNamer()
    seen: set[int] = set()  # hashes of the paths given so far: a film listed twice gets one row
    given_of: dict[str, str] = {}
    completed = distributed.as_completed()
    source = iter(paths)

    def next_task() -> tuple[str, Path, str] | None:
        for item in source:
            path = Path(item).absolute()
            if hash(str(path)) not in seen:
                seen.add(hash(str(path)))
                return str(item), path, str(out / namer(path))
        return None

    with StreamingReport(out, overwrite=settings.overwrite, identifiers=settings.include_identifiers) as report:
        try:
            exhausted = False
            while True:
                row = None
                while row is None and not exhausted and len(given_of) < max_in_flight:
                    task = next_task()
                    if task is None:
                        exhausted = True
                    elif check_paths and not task[1].exists():  # reported here, as a plain run does
                        row = segment_one(task[1], Path(task[2]), None, settings)
                        row["file"] = task[0]
                    else:
                        future = client.submit(
                            segment_task,
                            str(task[1]),
                            task[2],
                            settings,
                            pure=False,
                            key=f"medlung-{Path(task[2]).name}-{os.urandom(4).hex()}",
                        )
                        given_of[future.key] = task[0]
                        completed.add(future)
                if row is None:
                    if not given_of:
                        break
                    row = _row_of(next(completed), given_of)
                report.add(row)
                if progress:
                    progress(row)
                yield row
        finally:  # also when the caller stops early: nothing of this run is left running
            left = list(completed.futures)
            completed.clear()
            if left:
                client.cancel(left)


def _row_of(future, given_of: dict) -> dict:
    """The report row of a finished task (an error row when the cluster itself failed it)."""
    given = given_of.pop(future.key)
    try:
        row = future.result()
    except Exception as exc:  # the task itself failed: its worker died again and again
        row = {
            "status": "error",
            "error": f"{given}: the cluster could not segment this film ({type(exc).__name__}: {exc}); "
            "if workers run out of memory, give each more (see docs/distributed.md)",
        }
    row["file"] = given
    future.release()
    return row


def start_cluster(spec: str, threads_per_worker: int = 1):
    """A client for ``--scheduler``: ``local`` / ``local:N`` (a LocalCluster of N processes) or an address.

    Returns
    -------
    client : distributed.Client
    cluster : distributed.LocalCluster or None
        The cluster started here (to close), ``None`` for an address.
    """
    distributed = _import_distributed()
    if spec == "local" or spec.startswith("local:"):
        count = spec.partition(":")[2]
        if count and (not count.isdigit() or int(count) < 1):
            raise DaskMissingError(
                f"--scheduler {spec}: N must be a positive number of worker processes",
                hint="Write local:N, e.g. local:4, or a scheduler address tcp://HOST:8786.",
            )
        workers = int(count) if count else max(1, (os.cpu_count() or 2) // max(1, threads_per_worker))
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=None
        )
        return distributed.Client(cluster), cluster
    try:
        return distributed.Client(spec, timeout="20s"), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise DaskMissingError(
            f"no Dask scheduler reached at {spec} ({type(exc).__name__})",
            hint="Start one (dask scheduler; dask worker ADDRESS) or use --scheduler local:N.",
        ) from None
