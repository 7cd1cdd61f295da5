"""``medlung serve``: a DICOM Storage SCP that segments the films a PACS sends and stores the SEGs back.

Three kinds of threads share one durable queue (:class:`medlung.pacs.queue.Spool`):

* the **receivers** (pynetdicom, one thread per association) write each
  C-STORE instance into ``DIR/incoming`` (atomic, fsynced) and only then
  answer success; a full queue answers ``0xA700`` (out of resources);
* the **worker** (one thread, the model loaded once) segments the films in
  arrival order and writes each SEG into ``DIR/outgoing``, through
  :func:`medlung.pipeline.batch.segment_one`, so the SEG is the one
  ``medlung predict`` writes for the same film (same deterministic UIDs);
* the **sender** (one thread) stores each SEG on the ``--forward`` node
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

import errno
import ipaddress
import logging
import os
import queue
import shutil
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from medlung.errors import MedlungError
from medlung.logs import Throttle, event_handler, log_event, routed
from medlung.pacs.queue import Spool
from medlung.pacs.send import AE_TITLE_PATTERN, parse_destination
from medlung.pacs.tls import TlsConfig

__all__ = [
    "LOGGER",
    "PYNETDICOM_LEVEL",
    "PYNETDICOM_RECORDS",
    "PYNETDICOM_WINDOW_S",
    "ServeConfig",
    "StorageNode",
    "WorkdirBusyError",
    "exposure_warning",
    "node_logging",
    "parse_networks",
    "queue_status",
    "serve",
]

#: The node's events (see :mod:`medlung.logs`); :func:`node_logging` writes them out.
LOGGER = logging.getLogger("medlung.serve")
#: pynetdicom's records at this level and above go into the node's log while it runs...
PYNETDICOM_LEVEL = logging.WARNING
#: ...at most this many per this many seconds from each of its modules (a peer sending a stream that is not
#: DICOM gets one error per 6 bytes from pynetdicom); the next one let through says how many were dropped.
PYNETDICOM_RECORDS, PYNETDICOM_WINDOW_S = 5, 60.0

#: C-STORE statuses (PS3.4 B.2.3 and PS3.7 C). The A7xx codes are all "Refused: Out of Resources"; the
#: low byte says which limit: 00 queue full or too little disk, 01 film too large, 02 too many films on
#: one association.
SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700
FILM_TOO_LARGE, ASSOCIATION_FULL = 0xA701, 0xA702
#: Delivery: SEGs per association, and associations retried inside one attempt.
SEND_RETRIES, SEND_BACKOFF_S = 1, 0.5
#: The first wait after an undelivered SEG; doubled each time up to ``resend_interval``.
FIRST_RESEND_WAIT_S = 1.0
#: Associations served at once.
ASSOCIATIONS = 16
#: Seconds allowed for association negotiation, and for silence on an open association (a busy
#: node may take long to fsync a 40 MB film while four peers send at once).
ACSE_TIMEOUT_S, IDLE_TIMEOUT_S = 30, 300
#: Largest PDU we accept: big films arrive in fewer pieces (pynetdicom's default is 16 kB).
MAX_PDU_BYTES = 1 << 20
#: How long a stop waits for the sender's current association before leaving it to the next start.
SENDER_STOP_TIMEOUT_S = 60.0
#: Default limits per association: films stored, size of one film (a 4020x4892 16-bit film is 39 MB),
#: and disk space (MB) left free on the work folder's file system.
MAX_FILMS_PER_ASSOCIATION, MAX_FILM_MB, MIN_FREE_MB = 500, 256, 1024


class WorkdirBusyError(MedlungError):
    """Another ``medlung serve`` already uses this work folder."""


@dataclass
class ServeConfig:
    """What a node is and where it sends.

    Attributes
    ----------
    ae_title : str
        This node's AE title (1-16 characters).
    port : int
        TCP port to listen on (0: any free one; see :attr:`StorageNode.port`).
    forward : str
        ``AE@HOST:PORT`` the SEGs are stored on.
    workdir : Path
        The queue folder (incoming, outgoing, done, failed).
    bundle : Path, optional
        Model (default: the shipped bundle).
    allow : tuple of str
        Calling AE titles accepted; empty = any.
    max_queue : int
        Films received but not yet segmented before C-STORE answers ``0xA700``.
    bind : str
        Address listened on (``0.0.0.0``: every interface).
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    json_logs : bool
        One JSON object per log line.
    resend_interval : float
        Longest wait, in seconds, between delivery attempts while ``forward`` is unreachable.
    send_timeout : float
        Seconds allowed for connecting to ``forward`` and for each answer.
    allow_hosts : tuple of str
        Peer addresses accepted, as CIDRs (``10.1.2.0/24``, ``10.1.2.7``); empty = any.
    tls : TlsConfig, optional
        Listen with DICOM TLS only (plain associations are refused), and
        forward over TLS with the same files. With ``tls.ca``, callers must
        show a certificate it signed.
    forward_plain : bool
        Forward without TLS even when ``tls`` is given.
    max_films_per_association : int
        C-STOREs one association may make; later ones are refused (``0xA702``).
    max_film_mb : float
        Largest film accepted, in MB (10**6 bytes); larger ones are refused (``0xA701``).
    min_free_mb : float
        Disk space, in MB, that must stay free on the work folder's file
        system after a film is written; otherwise the film is refused (``0xA700``).
    """

    ae_title: str
    port: int
    forward: str
    workdir: Path
    bundle: Path | None = None
    allow: tuple = ()
    max_queue: int = 100
    bind: str = "0.0.0.0"
    device: str = "auto"
    json_logs: bool = False
    resend_interval: float = 60.0
    send_timeout: float = 30.0
    allow_hosts: tuple = ()
    tls: TlsConfig | None = None
    forward_plain: bool = False
    max_films_per_association: int = MAX_FILMS_PER_ASSOCIATION
    max_film_mb: float = MAX_FILM_MB
    min_free_mb: float = MIN_FREE_MB

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.networks = tuple(parse_networks(self.allow_hosts))
        if self.tls is not None and self.tls.cert is None:
            raise ValueError("listening with DICOM TLS needs this node's certificate (--tls-cert) and key.")
        if not isinstance(self.max_films_per_association, int) or self.max_films_per_association < 1:
            raise ValueError(
                f"max_films_per_association must be a whole number >= 1; got {self.max_films_per_association!r}."
            )
        if not self.max_film_mb > 0 or not self.min_free_mb >= 0:
            raise ValueError(
                f"max_film_mb must be > 0 and min_free_mb >= 0 (MB); got {self.max_film_mb!r} and {self.min_free_mb!r}."
            )
        for title in (self.ae_title, *self.allow):
            if not isinstance(title, str) or not AE_TITLE_PATTERN.match(title) or not title.strip():
                raise ValueError(f"AE title {title!r} is not 1-16 printable characters without backslash.")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be a number from 0 to 65535; got {self.port!r}.")
        if not isinstance(self.max_queue, int) or self.max_queue < 1:
            raise ValueError(f"max_queue must be a whole number >= 1; got {self.max_queue!r}.")
        if not self.resend_interval > 0:
            raise ValueError(f"resend_interval must be a number of seconds > 0; got {self.resend_interval!r}.")
        parse_destination(self.forward)


def parse_networks(texts) -> list:
    """``ipaddress`` networks from CIDR texts (``10.1.2.0/24``, ``10.1.2.7``, ``fd00::/8``).

    Raises
    ------
    ValueError
        Naming the text that is not an address or a CIDR.
    """
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(str(text).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or a CIDR such as 10.1.2.0/24.") from None
    return networks


def is_loopback(bind: str) -> bool:
    """Whether a listening address reaches this machine only."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def exposure_warning(config: ServeConfig) -> str | None:
    """The start-up warning of a node reachable beyond this machine by anyone; None when it is not.

    A node is exposed when it listens on an address other than loopback,
    has no ``allow_hosts``, and either no TLS or TLS without a CA bundle
    (encrypted, but any caller is accepted).
    """
    if is_loopback(config.bind) or config.networks:
        return None
    if config.tls is None:
        return (
            "listening beyond this machine with neither --allow-host nor TLS: any host that reaches this port "
            "can store films in plain text (AE titles are not authentication); give --allow-host CIDRs "
            "and/or --tls-cert/--tls-key/--tls-ca"
        )
    if not config.tls.mutual:
        return (
            "TLS without --tls-ca encrypts but does not authenticate callers: any host that reaches this port "
            "can store films; give --tls-ca and/or --allow-host"
        )
    return None


@dataclass
class _Job:
    """What the node remembers about a film while it is in the queue."""

    key: str
    received: float = field(default_factory=time.monotonic)
    calling_ae: str = ""
    send_attempts: int = 0
    next_attempt: float = 0.0


class StorageNode:
    """A DICOM Storage SCP with a durable queue, one segmentation worker and one sender.

    Parameters
    ----------
    config : ServeConfig
    segmenter : medlung.inference.Segmenter, optional
        A loaded model (default: loaded from ``config.bundle`` by :meth:`start`).
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
        self.spool = Spool(config.workdir)
        self.port: int | None = None
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}  # films in incoming or outgoing
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
        self._lock_file = None
        self._options = None
        self._handshakes = threading.BoundedSemaphore(ASSOCIATIONS)  # TLS handshakes under way

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
        to_segment, to_send = self.spool.recover()
        if self.segmenter is None:
            from medlung.inference import Segmenter

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.segmenter = Segmenter(self.config.bundle, device=self.config.device)
        from medlung.pipeline.batch import PredictOptions

        # the SEG's UIDs follow every option of the segmenter (medlung.uids.output_options)
        self._options = PredictOptions(formats=("seg",), overwrite=False)
        for key in to_segment:
            self._jobs[key] = _Job(key)
            self._waiting += 1
            self._to_segment.put(key)
        for key in to_send:
            self._jobs[key] = _Job(key)
            self._to_send.append(key)
        if to_segment or to_send:
            self.log("resumed", to_segment=len(to_segment), to_send=len(to_send))
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

    # --- receiving -----------------------------------------------------------------------------
    def _listen(self) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
        from pynetdicom.sop_class import Verification

        from medlung.io.dicom import FILM_SOP_CLASSES

        ae = AE(ae_title=self.config.ae_title)
        for sop_class in FILM_SOP_CLASSES:
            ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        if self.config.allow:
            ae.require_calling_aet = list(self.config.allow)
        ae.maximum_associations = ASSOCIATIONS
        ae.acse_timeout = ACSE_TIMEOUT_S
        ae.dimse_timeout = ae.network_timeout = IDLE_TIMEOUT_S
        ae.maximum_pdu_size = MAX_PDU_BYTES
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        ssl_context = self.config.tls.server_context() if self.config.tls is not None else None
        try:
            self._server = ae.make_server(
                (self.config.bind, self.config.port),
                ssl_context=ssl_context,
                evt_handlers=handlers,
                server_class=_guarded_server_class(),
                node=self,
            )
        except OSError as exc:
            self.request_stop()
            reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be opened ({exc.strerror or exc})"
            raise MedlungError(
                f"port {self.config.port} on {self.config.bind} {reason}",
                hint="Choose another --port or stop the program that holds it.",
            ) from None
        ae._servers.append(self._server)  # what AE.start_server does; the server's shutdown removes it
        threading.Thread(target=self._server.serve_forever, name="medlung-acceptor", daemon=True).start()
        self.port = self._server.server_address[1]
        tls = self.config.tls
        self.log(
            "listening",
            ae_title=self.config.ae_title,
            address=self.config.bind,
            port=self.port,
            forward=self.config.forward,
            allow=",".join(self.config.allow) or "any",
            allow_hosts=",".join(str(n) for n in self.config.networks) or "any",
            tls="off" if tls is None else "mutual" if tls.mutual else "server-only",
            forward_tls=tls is not None and not self.config.forward_plain,
            max_queue=self.config.max_queue,
            max_films_per_association=self.config.max_films_per_association,
            max_film_mb=self.config.max_film_mb,
            min_free_mb=self.config.min_free_mb,
            model=self.segmenter.model_version,
        )
        warning = exposure_warning(self.config)
        if warning:
            self.log("exposed", "warning", address=self.config.bind, port=self.port, message=warning)

    # --- who may connect -----------------------------------------------------------------------
    def _peer_allowed(self, client_address) -> bool:
        """Whether a new TCP peer's address is in ``allow_hosts`` (logged when not)."""
        if not self.config.networks:
            return True
        try:
            address = ipaddress.ip_address(client_address[0])
        except ValueError:
            address = None
        if address is not None and getattr(address, "ipv4_mapped", None) is not None:
            address = address.ipv4_mapped
        if address is not None and any(address in network for network in self.config.networks):
            return True
        self.log("association-refused", "warning", address=_peer(client_address), reason="address not in --allow-host")
        return False

    def _tls_handshake(self, raw, client_address, context):
        """The TLS socket of an accepted connection, or None (logged, closed) when the handshake fails."""
        import socket as sockets
        import ssl

        if not self._handshakes.acquire(blocking=False):
            self.log(
                "association-refused",
                "warning",
                address=_peer(client_address),
                reason=f"more than {ASSOCIATIONS} TLS handshakes at once",
            )
            _close(raw)
            return None
        try:
            raw.settimeout(ACSE_TIMEOUT_S)  # a silent peer gives up its thread after this
            wrapped = context.wrap_socket(raw, server_side=True)
            wrapped.settimeout(None)  # what pynetdicom expects of an accepted socket
            return wrapped
        except (ssl.SSLError, OSError) as exc:
            if isinstance(exc, sockets.timeout):
                reason = f"no TLS handshake within {ACSE_TIMEOUT_S} s"
            else:
                text = str(getattr(exc, "reason", None) or exc).lower().replace("_", " ")
                hint = " (a plain-text association?)" if "wrong version number" in text or "http" in text else ""
                reason = f"TLS handshake failed: {text}{hint}"
            self.log("association-refused", "warning", address=_peer(client_address), reason=reason)
            _close(raw)
            return None
        finally:
            self._handshakes.release()

    def _on_echo(self, event) -> int:
        return SUCCESS

    def _on_rejected(self, event) -> None:
        requestor = event.assoc.requestor
        self.log(
            "association-rejected",
            "warning",
            calling_ae=_ae(requestor.ae_title),
            address=f"{requestor.address}:{requestor.port}",
        )

    def _refuse(self, code: int, event, uid: str, calling: str, reason: str, comment: str):
        """Log a refused C-STORE with the peer's address; the status to answer."""
        requestor = event.assoc.requestor
        self.log(
            "store-refused",
            "warning",
            sop_instance_uid=uid,
            calling_ae=calling,
            address=f"{requestor.address}:{requestor.port}",
            status=f"0x{code:04X}",
            reason=reason,
        )
        return _status(code, comment)

    def _on_store(self, event):
        """Write the instance durably into incoming, then answer; 0xA7xx when a limit refuses it."""
        started = time.perf_counter()
        uid = str(event.request.AffectedSOPInstanceUID)
        calling = _ae(event.assoc.requestor.ae_title)
        key = self.spool.key_for(uid)
        config = self.config
        stored_here = getattr(event.assoc, "_medlung_films", 0) + 1  # C-STOREs on this association so far
        event.assoc._medlung_films = stored_here
        if stored_here > config.max_films_per_association:
            return self._refuse(
                ASSOCIATION_FULL,
                event,
                uid,
                calling,
                f"more than {config.max_films_per_association} films on one association",
                "too many films on one association; send the rest on a new one",
            )
        try:
            data = event.encoded_dataset()
        except Exception as exc:  # an encoding pynetdicom cannot hand over
            self.log(
                "receive-error", "error", sop_instance_uid=uid, calling_ae=calling, error=f"{type(exc).__name__}: {exc}"
            )
            return _status(OUT_OF_RESOURCES, f"could not queue the instance ({type(exc).__name__})")
        megabytes = len(data) / 1e6
        if megabytes > config.max_film_mb:
            return self._refuse(
                FILM_TOO_LARGE,
                event,
                uid,
                calling,
                f"film of {megabytes:.1f} MB is larger than --max-film-mb {config.max_film_mb:g}",
                f"film larger than {config.max_film_mb:g} MB",
            )
        free_mb = shutil.disk_usage(self.spool.root).free / 1e6
        if free_mb - megabytes < config.min_free_mb:
            return self._refuse(
                OUT_OF_RESOURCES,
                event,
                uid,
                calling,
                f"{free_mb:.0f} MB free on the work folder's disk, --min-free-mb {config.min_free_mb:g} must stay free",
                "not enough disk space; send again later",
            )
        with self._lock:
            if self._stopping.is_set():
                return _status(OUT_OF_RESOURCES, "the node is stopping; send again later")
            if key in self._jobs:
                self.log("duplicate", sop_instance_uid=uid, calling_ae=calling, note="already queued")
                return SUCCESS
            if self._waiting >= self.config.max_queue:
                self.log("queue-full", "warning", sop_instance_uid=uid, calling_ae=calling, waiting=self._waiting)
                return _status(OUT_OF_RESOURCES, f"queue full ({self._waiting} films waiting); send again later")
            self._jobs[key] = _Job(key, calling_ae=calling)
            self._waiting += 1
        try:
            self.spool.receive(key, data)
        except Exception as exc:  # disk full, bad encoding: the sender keeps its copy and retries
            with self._lock:
                self._jobs.pop(key, None)
                self._waiting -= 1
            self.log(
                "receive-error", "error", sop_instance_uid=uid, calling_ae=calling, error=f"{type(exc).__name__}: {exc}"
            )
            return _status(OUT_OF_RESOURCES, f"could not queue the instance ({type(exc).__name__})")
        self._to_segment.put(key)
        self.log(
            "received",
            key=key,
            sop_instance_uid=uid,
            calling_ae=calling,
            bytes=len(data),
            seconds=round(time.perf_counter() - started, 3),
            waiting=self._waiting,
        )
        return SUCCESS

    # --- segmenting ----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                key = self._to_segment.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._segment(key)
            except Exception as exc:  # a queue problem (disk): keep the film for the next start
                with self._lock:
                    self._waiting -= 1
                self.log("worker-error", "error", key=key, error=f"{type(exc).__name__}: {exc}")

    def _segment(self, key: str) -> None:
        from medlung.pipeline.batch import segment_one

        started = time.perf_counter()
        seg = self.spool.seg("outgoing", key)
        row = {"status": "ok"}
        resumed = seg.exists()  # a SEG written before a crash: do not segment again
        if not resumed:
            film = self.spool.film("incoming", key)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = segment_one(film, self.spool.folder("outgoing") / key, self.segmenter, self._options)
        if row["status"] == "error":
            reason = row.get("error") or "segmentation failed"
            self.spool.fail(key, reason)
            with self._lock:
                self._jobs.pop(key, None)
                self._waiting -= 1
            self.log("failed", "error", key=key, stage="segment", reason=reason, reason_file=self.spool.reason(key))
            return
        self.spool.segmented(key)
        with self._send_wakeup:
            self._waiting -= 1
            self._to_send.append(key)
            self._send_wakeup.notify_all()
        fields = {k: row.get(k) for k in ("rows", "cols", "total_cm2")}
        self.log(
            "segmented",
            key=key,
            seconds=round(time.perf_counter() - started, 3),
            resumed=resumed,
            empty=",".join(row.get("empty_lungs") or []) or None,
            **fields,
        )

    # --- sending -------------------------------------------------------------------------------
    def _deliver(self) -> None:
        while True:
            with self._send_wakeup:
                key = None
                while not self._stopping.is_set():
                    key, wait = self._next_to_send()
                    if key is not None:
                        break
                    self._send_wakeup.wait(min(wait, 0.5))  # a signal only sets the flag
                if key is None:
                    return
            try:
                self._send(key)
            except Exception as exc:  # a queue problem (disk): keep the SEG for the next start
                self.log("sender-error", "error", key=key, error=f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self._to_send.remove(key)

    def _next_to_send(self) -> tuple[str | None, float]:
        """The first SEG due (under the lock), or None and how long to wait."""
        now = time.monotonic()
        if not self._to_send:
            return None, 1.0
        if now < self._destination_down_until:
            return None, self._destination_down_until - now
        due = [k for k in self._to_send if self._jobs.get(k, _Job(k)).next_attempt <= now]
        if not due:
            return None, max(0.05, min(self._jobs[k].next_attempt for k in self._to_send if k in self._jobs) - now)
        return due[0], 0.0

    def _send(self, key: str) -> None:
        from medlung.pacs.send import send_cstore

        started = time.perf_counter()
        seg = self.spool.seg("outgoing", key)
        tls = None if self.config.forward_plain else self.config.tls
        (result,) = send_cstore(
            [seg],
            self.config.forward,
            calling_ae=self.config.ae_title,
            retries=SEND_RETRIES,
            backoff=SEND_BACKOFF_S,
            timeout=self.config.send_timeout,
            tls=tls,
        )
        job = self._jobs.get(key) or _Job(key)
        job.send_attempts += result.attempts
        if result.attempts == 0:  # the SEG file itself is missing or unreadable
            raise MedlungError(result.message)
        if result.ok:
            self.spool.mark_sent(key)
            with self._lock:
                self._to_send.remove(key)
                self._jobs.pop(key, None)
                self._resend_wait = FIRST_RESEND_WAIT_S
            self.log(
                "sent",
                key=key,
                sop_instance_uid=result.sop_instance_uid,
                destination=self.config.forward,
                status=f"0x{result.status:04X}",
                attempts=job.send_attempts,
                seconds=round(time.perf_counter() - started, 3),
                total_seconds=round(time.monotonic() - job.received, 3),
            )
            return
        transient = result.status is None or (result.status & 0xFF00) == 0xA700
        if transient:
            with self._lock:
                wait = self._resend_wait
                self._resend_wait = min(self._resend_wait * 2, self.config.resend_interval)
                self._destination_down_until = time.monotonic() + wait
                job.next_attempt = self._destination_down_until
            self.log(
                "delivery-delayed",
                "warning",
                key=key,
                destination=self.config.forward,
                retry_in=round(wait, 1),
                waiting_to_send=len(self._to_send),
                reason=result.message,
            )
            return
        self.spool.fail(key, f"{self.config.forward} refused the SEG: {result.message}")
        with self._lock:
            self._to_send.remove(key)
            self._jobs.pop(key, None)
        self.log("failed", "error", key=key, stage="send", reason=result.message, reason_file=self.spool.reason(key))

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


def _guarded_server_class():
    """pynetdicom's threaded server, with the node's address check and the TLS handshake in the peer's thread.

    pynetdicom does the TLS handshake in its accept loop, where one silent or
    plain-text peer would hold up every other; here the loop only accepts,
    checks the address (:meth:`StorageNode._peer_allowed`) and starts a
    thread, and that thread does the handshake (:meth:`StorageNode._tls_handshake`).
    """
    from pynetdicom.transport import ThreadedAssociationServer

    class GuardedAssociationServer(ThreadedAssociationServer):
        def __init__(self, *args, node: StorageNode, **kwargs) -> None:
            self.node = node
            super().__init__(*args, **kwargs)

        def get_request(self):
            return self.socket.accept()

        def verify_request(self, request, client_address) -> bool:
            return self.node._peer_allowed(client_address)

        def process_request_thread(self, request, client_address) -> None:
            if self.ssl_context is not None:
                request = self.node._tls_handshake(request, client_address, self.ssl_context)
                if request is None:
                    return
            super().process_request_thread(request, client_address)

    return GuardedAssociationServer


def _peer(client_address) -> str:
    host, port = client_address[0], client_address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _close(sock) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _ae(title) -> str:
    if isinstance(title, bytes):
        title = title.decode("ascii", "replace")
    return str(title).strip()


def _status(code: int, comment: str):
    from pydicom.dataset import Dataset

    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


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
