"""``medlung serve``: a DICOM Storage SCP that segments the films a PACS sends and stores the SEGs (and SRs) back.

Three kinds of threads share one durable queue (:class:`medlung.services.node.spool.Spool`):

* the **receivers** (pynetdicom, one thread per association) write each
  C-STORE instance into ``DIR/incoming`` (atomic, fsynced) and only then
  answer success; a full queue answers ``0xA700`` (out of resources);
* the **worker** (one thread, the model loaded once) segments the films in
  arrival order and writes each SEG and its measurement report (DICOM SR)
  into ``DIR/outgoing``, through :func:`medlung.pipeline.batch.segment_one`,
  so they are the ones ``medlung predict`` writes for the same film (same
  deterministic UIDs);
* the **sender** (one thread) stores each SEG, then its SR, on the ``--forward`` node
  (:func:`medlung.pacs.send_cstore`, retried with backoff); while the node
  is unreachable the SEGs wait in outgoing and are tried again, waiting
  longer each time up to ``resend_interval`` seconds. A SEG the node
  refuses outright goes to ``DIR/failed`` with the reason.

Stopping (:meth:`StorageNode.stop`, SIGTERM, SIGINT): the SCP stops
accepting, the worker finishes the film it is on, the sender its current
send; whatever is left waits in the queue for the next start.

Who may store (checked in this order, each refusal logged with the peer's
address): the peer's address must be in ``allow_hosts`` (CIDRs; checked on
the TCP connection, before a byte is read); with TLS the peer must complete
the handshake (and, with a CA bundle, show a certificate signed by it); the
calling AE title must be in ``allow`` (AE titles are not authentication:
any host can claim one). Then each C-STORE is refused with an
out-of-resources status (``0xA7xx``, nothing written) when the association
has already stored ``max_films_per_association`` films, when the film is
larger than ``max_film_mb``, or when storing it would leave less than
``min_free_mb`` free on the work folder's disk.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import warnings
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO

from medlung.errors import MedlungError
from medlung.logs import Throttle, event_handler, log_event, routed
from medlung.services.node.config import ServeConfig, WorkdirBusyError
from medlung.services.node.forwarding import FIRST_RESEND_WAIT_S, Forwarding
from medlung.services.node.receiving import HANDSHAKES, Receiving
from medlung.services.node.segmenting import Segmenting
from medlung.services.node.spool import SEG_SUFFIX, SR_SUFFIX, QueueEntry, Spool

#: The node's events (see :mod:`medlung.logs`); :func:`node_logging` writes them out.
LOGGER = logging.getLogger("medlung.serve")
#: pynetdicom's records at this level and above go into the node's log while it runs...
PYNETDICOM_LEVEL = logging.WARNING
#: ...at most this many per this many seconds from each of its modules (a peer sending a stream that is not
#: DICOM gets one error per 6 bytes from pynetdicom); the next one let through says how many were dropped.
PYNETDICOM_RECORDS, PYNETDICOM_WINDOW_S = 5, 60.0
#: How long a stop waits for the sender's current association before leaving it to the next start.
SENDER_STOP_TIMEOUT_S = 60.0


class StorageNode(Receiving, Segmenting, Forwarding):
    """A DICOM Storage SCP with a durable queue, one segmentation worker and one sender.

    Parameters
    ----------
    config : ServeConfig
    segmenter : medlung.inference.Segmenter, optional
        The model ``config.settings`` describe, loaded (default: loaded by :meth:`start`).
    log : callable, optional
        ``log(event, level="info", **fields)``; default: :func:`medlung.logs.log_event`
        on :data:`LOGGER` (``medlung.serve``), which :func:`serve` writes on
        standard error through :func:`node_logging`.

    Examples
    --------
    >>> node = StorageNode(ServeConfig("MEDLUNG", 11112, "PACS@10.0.0.5:104", Path("spool")))  # doctest: +SKIP
    >>> node.start(); node.wait(); node.stop()                                               # doctest: +SKIP
    """

    def __init__(self, config: ServeConfig, segmenter=None, log=None) -> None:
        self.config = config
        self.segmenter = segmenter
        self.log = log or partial(log_event, LOGGER)
        self.spool = Spool(config.workdir, outputs=(SEG_SUFFIX, SR_SUFFIX))
        self.port: int | None = None
        self._lock = threading.Lock()
        self._jobs: dict[str, QueueEntry] = {}  # films in incoming or outgoing
        self._waiting = 0  # films in incoming (received, not yet segmented)
        self._to_segment: queue.Queue[str] = queue.Queue()
        self._to_send: list[str] = []
        self._send_wakeup = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._resend_wait = FIRST_RESEND_WAIT_S
        self._destination_down_until = 0.0
        self._server = None
        self._threads: list[threading.Thread] = []
        self._lock_file: IO[str] | None = None
        self._handshakes = threading.BoundedSemaphore(HANDSHAKES)  # TLS handshakes under way
        self._peers: dict[str, int] = {}  # connections open per peer address
        self._memory, self._associations, decode_limit = config.memory_plan()
        from medlung.services.node.decoding import IsolatedLoader

        self._loader = IsolatedLoader(self.spool.root / "decoding", decode_limit)

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Lock the work folder, resume its queue, load the model, then listen.

        Raises
        ------
        WorkdirBusyError
            When another node uses the work folder.
        MedlungError
            When the model cannot be loaded or the port cannot be opened.
        """
        self._lock_workdir()
        to_segment, to_send = self.spool.recover(self.config.max_attempts)
        if self.segmenter is None:
            from medlung.pipeline.settings import load_segmenter

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.segmenter = load_segmenter(self.config.settings)
        for key in to_segment:
            self._jobs[key] = QueueEntry(key)
            self._waiting += 1
            self._to_segment.put(key)
        for key in to_send:
            self._jobs[key] = QueueEntry(key)
            self._to_send.append(key)
        if to_segment or to_send:
            self.log("resumed", to_segment=len(to_segment), to_send=len(to_send))
        self._prune_done()
        self._threads = [
            threading.Thread(target=self._work, name="medlung-worker", daemon=True),
            threading.Thread(target=self._deliver, name="medlung-sender", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._listen()

    def wait(self, poll: float = 0.5) -> None:
        """Block until :meth:`request_stop` is called (e.g. by a signal handler)."""
        while not self._stopping.wait(poll):
            pass

    def request_stop(self) -> None:
        """Ask the node to stop (safe from a signal handler)."""
        self._stopping.set()
        with self._send_wakeup:
            self._send_wakeup.notify_all()

    def stop(self) -> None:
        """Stop listening, let the worker finish its film and the sender its send, then return."""
        self.request_stop()
        if self._lock_file is None:  # never started (work folder busy)
            return
        self.log("stopping", waiting=self._waiting, to_send=len(self._to_send))
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        worker, sender = self._threads or (None, None)
        if worker is not None:
            worker.join()
        if sender is not None:
            sender.join(SENDER_STOP_TIMEOUT_S)
        counts = self.spool.counts()
        self.log("stopped", **counts)
        self._stopped.set()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # --- work folder ---------------------------------------------------------------------------
    def _lock_workdir(self) -> None:
        import fcntl

        path = self.spool.root / "serve.lock"
        handle = open(path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise WorkdirBusyError(
                f"is used by another medlung serve (pid {holder})",
                self.spool.root,
                "Stop that node or give another --workdir.",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle


def queue_status(workdir: str | Path) -> dict:
    """Counts of a work folder's queue, and whether a node holds it.

    Parameters
    ----------
    workdir : str or Path
        The ``--workdir`` of a node.

    Returns
    -------
    dict
        ``incoming``, ``outgoing``, ``done``, ``failed`` (counts) and
        ``running`` (the pid of the node using it, or None).

    Raises
    ------
    MedlungError
        When the folder is not a node's work folder.
    """
    import fcntl

    root = Path(workdir)
    if not all((root / state).is_dir() for state in ("incoming", "outgoing", "done", "failed")):
        raise MedlungError(
            "is not a medlung serve work folder (no incoming/outgoing/done/failed)",
            root,
            "Give the --workdir of a node.",
        )
    counts = Spool(root).counts()
    running = None
    lock = root / "serve.lock"
    if lock.exists():
        with open(lock, "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                text = handle.read().strip()
                running = int(text) if text.isdigit() else -1
    return {**counts, "running": running}


@contextmanager
def node_logging(json_logs: bool = False, stream=None, logger: logging.Logger = LOGGER):
    """While inside, the node's events and pynetdicom's warnings and errors are lines on ``stream``.

    The events of :data:`LOGGER` (``medlung.serve``, info and above) and the
    records of ``pynetdicom`` at :data:`PYNETDICOM_LEVEL` and above go to one
    handler (:func:`medlung.logs.event_handler`): text lines, or one JSON
    object per line, pynetdicom's with ``"logger"`` naming its module, at
    most :data:`PYNETDICOM_RECORDS` per :data:`PYNETDICOM_WINDOW_S` seconds
    from each module (:class:`medlung.logs.Throttle`). On exit
    both loggers' levels and handlers are what they were (see
    :func:`medlung.logs.routed`); nothing is silenced, in or out.

    Parameters
    ----------
    json_logs : bool
        One JSON object per line.
    stream : file, optional
        Default: standard error.
    logger : logging.Logger
        The logger the node's events are on (another than :data:`LOGGER` when
        two nodes share a process; give the node ``log=partial(log_event, logger)``).

    Yields
    ------
    logging.Handler
    """
    handler = event_handler(json_logs, stream)
    with routed(handler, {logger.name: logging.INFO, "pynetdicom": PYNETDICOM_LEVEL}):
        handler.addFilter(Throttle(["pynetdicom"], PYNETDICOM_RECORDS, PYNETDICOM_WINDOW_S))  # after routed's levels
        yield handler


def serve(config: ServeConfig, log=None) -> None:
    """Run a node until SIGTERM or SIGINT, then stop it cleanly (see :class:`StorageNode`).

    Its events, and pynetdicom's warnings and errors, are written on standard
    error while it runs (:func:`node_logging`, JSON with ``config.json_logs``).

    Raises
    ------
    MedlungError
        When the node cannot start (work folder busy, model, port).
    """
    os.umask(0o077)  # the films and SEGs carry patient names: readable by the node's user only (this process)
    with node_logging(config.json_logs):
        node = StorageNode(config, log=log)
        previous = {}
        received = []

        def on_signal(number, frame) -> None:  # only sets flags: the main thread may hold a lock here
            received.append(signal.Signals(number).name)
            node._stopping.set()

        for number in (signal.SIGTERM, signal.SIGINT):
            previous[number] = signal.signal(number, on_signal)
        try:
            node.start()
            node.wait()
            if received:
                node.log("signal", signal=received[0])
        finally:
            node.stop()
            for number, handler in previous.items():
                signal.signal(number, handler)
