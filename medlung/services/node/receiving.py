"""Receiving: the node's associations (who may connect, TLS handshakes) and its C-STORE handler.

The receivers (pynetdicom, one thread per association) write each instance
into ``DIR/incoming`` (atomic, fsynced) and only then answer success; every
refusal is logged with the peer's address (see :mod:`medlung.services.node`).
"""

from __future__ import annotations

import errno
import ipaddress
import shutil
import socket
import threading
import time
from typing import cast

from medlung.errors import MedlungError
from medlung.services.node.config import exposure_warning
from medlung.services.node.spool import QueueEntry
from medlung.services.node.state import NodeState

#: C-STORE statuses (PS3.4 B.2.3 and PS3.7 C). The A7xx codes are all "Refused: Out of Resources"; the
#: low byte says which limit: 00 queue full or too little disk, 01 film too large, 02 too many films on
#: one association. A900: the data set does not match its SOP Class (or its UIDs not the request's);
#: C000: cannot understand (cut short, not DICOM).
SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700
FILM_TOO_LARGE, ASSOCIATION_FULL = 0xA701, 0xA702
DATASET_MISMATCH, CANNOT_UNDERSTAND = 0xA900, 0xC000
#: TLS handshakes under way at once (each peer address at most ServeConfig.max_associations_per_host of them).
HANDSHAKES = 64
#: Seconds allowed for association negotiation and for a TLS handshake; for silence on an association that has
#: stored nothing yet (a silent peer gives its slot back soon); and for silence once it has stored a film (a busy
#: node may take long to fsync a 40 MB film while four peers send at once).
ACSE_TIMEOUT_S, QUIET_TIMEOUT_S, IDLE_TIMEOUT_S = 15, 20, 300
#: A film still arriving past this many times --max-film-mb (plus a megabyte) aborts its association: its bytes
#: are counted as they arrive, so a huge film never sits whole in memory. Films between the limit and this are
#: received and refused with FILM_TOO_LARGE, the association going on.
ABORT_FACTOR = 2
#: Largest PDU we accept: big films arrive in fewer pieces (pynetdicom's default is 16 kB).
MAX_PDU_BYTES = 1 << 20


class Receiving(NodeState):
    """The receiving half of :class:`~medlung.services.node.StorageNode` (a mixin: it shares the node's state)."""

    def _listen(self) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # names made at import

        from medlung.io.dicom import FILM_SOP_CLASSES
        from medlung.pacs.syntaxes import VERIFICATION_SYNTAXES, receivable_syntaxes

        ae = AE(ae_title=self.config.ae_title)
        accepted = receivable_syntaxes()  # what the films can be decoded from; the rest is refused in the association
        for sop_class in FILM_SOP_CLASSES:
            ae.add_supported_context(sop_class, accepted)
        ae.add_supported_context(Verification, VERIFICATION_SYNTAXES)
        if self.config.allow:
            ae.require_calling_aet = list(self.config.allow)
        ae.maximum_associations = self._associations  # sized by the memory budget (ServeConfig.memory_plan)
        ae.acse_timeout = ACSE_TIMEOUT_S
        ae.dimse_timeout = IDLE_TIMEOUT_S
        ae.network_timeout = QUIET_TIMEOUT_S  # IDLE_TIMEOUT_S once an association stores a film (_on_store)
        ae.maximum_pdu_size = MAX_PDU_BYTES
        handlers: list[evt.EventHandlerType] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_DATA_RECV, self._on_data),
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
            max_memory_mb=round(self._memory / 2**20),
            associations=self._associations,
            max_associations_per_host=self._per_host_limit(),
            model=self.segmenter.model_version,
        )
        warning = exposure_warning(self.config)
        if warning:
            self.log("exposed", "warning", address=self.config.bind, port=self.port, message=warning)

    # --- who may connect -----------------------------------------------------------------------
    def _peer_allowed(self, client_address) -> bool:
        """Whether a new TCP peer may go on: its address in ``allow_hosts``, and fewer than
        ``max_associations_per_host`` connections of it open (each refusal logged with its reason). Open are its
        running associations and its connections accepted whose association has not started yet (a TLS handshake,
        counted here until :meth:`_peer_done`)."""
        if self.config.networks:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
            try:
                address = ipaddress.ip_address(client_address[0])
            except ValueError:
                address = None
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if address is None or not any(address in network for network in self.config.networks):
                self.log(
                    "association-refused",
                    "warning",
                    address=_peer(client_address),
                    reason="address not in --allow-host",
                )
                return False
        host, limit = str(client_address[0]), self._per_host_limit()
        server = self._server
        running = server.ae.active_associations if server is not None else []
        with self._lock:
            open_now = self._peers.get(host, 0) + sum(
                1 for a in running if a.is_acceptor and str(a.requestor.address) == host and a.is_alive()
            )
            if open_now < limit:
                self._peers[host] = self._peers.get(host, 0) + 1
                return True
        self.log(
            "association-refused",
            "warning",
            address=_peer(client_address),
            reason=f"{open_now} connections from this address already open, the most one address may hold "
            f"(--max-associations-per-host, at most the {self._associations} associations served less one)",
        )
        return False

    def _per_host_limit(self) -> int:
        """Connections one address may hold: ``max_associations_per_host``, and always fewer than the associations
        the node serves at once, so that one host (silent sockets, say) never takes every slot."""
        return max(1, min(self.config.max_associations_per_host, self._associations - 1))

    def _peer_done(self, client_address) -> None:
        """A connection counted by :meth:`_peer_allowed` has its association running (or has ended)."""
        host = str(client_address[0])
        with self._lock:
            left = self._peers.get(host, 0) - 1
            if left > 0:
                self._peers[host] = left
            else:
                self._peers.pop(host, None)

    def _tls_handshake(self, raw, client_address, context):
        """The TLS socket of an accepted connection, or None (logged, closed) when the handshake fails."""
        import ssl

        if not self._handshakes.acquire(blocking=False):
            self.log(
                "association-refused",
                "warning",
                address=_peer(client_address),
                reason=f"more than {HANDSHAKES} TLS handshakes at once",
            )
            _close(raw)
            return None
        try:
            raw.settimeout(ACSE_TIMEOUT_S)  # a silent peer gives up its thread (and its slot) after this
            wrapped = context.wrap_socket(raw, server_side=True)
            wrapped.settimeout(None)  # what pynetdicom expects of an accepted socket
            return wrapped
        except (ssl.SSLError, OSError) as exc:
            if isinstance(exc, socket.timeout):
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
        ae = event.assoc.ae
        calling = _ae(requestor.ae_title)
        if ae.require_calling_aet and calling not in [t.strip() for t in ae.require_calling_aet]:
            reason = "calling AE title not in --allow"
        elif len(served := [a for a in ae.active_associations if a.is_acceptor]) > ae.maximum_associations:
            holders = sorted({str(a.requestor.address) for a in served if a is not event.assoc})
            reason = (
                f"{ae.maximum_associations} associations already served, the most --max-memory allows "
                f"(held by {', '.join(holders)})"
            )
        else:
            reason = "refused in negotiation (user identity or called AE title)"
        self.log(
            "association-rejected",
            "warning",
            calling_ae=calling,
            address=f"{requestor.address}:{requestor.port}",
            reason=reason,
        )

    def _on_data(self, event) -> None:
        """Count the bytes of the film arriving on this association; abort it once far past --max-film-mb."""
        data = event.data
        if not data or data[0] != 0x04:  # P-DATA-TF PDUs carry the films
            return
        assoc = event.assoc
        arrived = getattr(assoc, "_medlung_bytes", 0) + len(data)
        assoc._medlung_bytes = arrived
        limit = self.config.max_film_mb * 1e6
        if arrived > ABORT_FACTOR * limit + 1e6 and not getattr(assoc, "_medlung_aborting", False):
            assoc._medlung_aborting = True
            requestor = assoc.requestor
            self.log(
                "association-aborted",
                "warning",
                calling_ae=_ae(requestor.ae_title),
                address=f"{requestor.address}:{requestor.port}",
                reason=f"a film of more than {arrived / 1e6:.1f} MB was still arriving "
                f"(--max-film-mb {self.config.max_film_mb:g}): nothing of it is kept",
            )
            assoc.abort()

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

    def _check_dataset(self, event, uid: str, calling: str):
        """None when the data set can be queued; else the status refusing it (logged).

        It must be a whole DICOM data set (``0xC000`` cannot understand: cut
        short, not DICOM), inflate to at most --max-film-mb when deflated
        (``0xA701``), have pixel data and carry the SOP Class and Instance UIDs
        of the request (``0xA900``): a sender cannot key one film under
        another's UID.
        """
        from medlung.io.headers import HeaderError, inspect_dataset

        request_class, request_instance = _request_uids(event)
        limit = self.config.max_film_mb * 1e6
        try:
            found = inspect_dataset(event.request.DataSet, str(event.context.transfer_syntax), int(limit))
        except HeaderError as exc:
            return self._refuse(CANNOT_UNDERSTAND, event, uid, calling, str(exc), "cannot understand: " + str(exc))
        except OverflowError as exc:
            return self._refuse(FILM_TOO_LARGE, event, uid, calling, str(exc), f"film larger than {limit / 1e6:g} MB")
        if not found.has_pixels:
            reason = "the data set has no pixel data: not an image of its SOP Class"
            return self._refuse(DATASET_MISMATCH, event, uid, calling, reason, "no pixel data")
        for what, requested, carried in (
            ("SOP Class UID", request_class, found.sop_class_uid),
            ("SOP Instance UID", request_instance, found.sop_instance_uid),
        ):
            if requested != carried:
                reason = f"the data set's {what} {carried[:64]!r} is not the request's {requested[:64]!r}"
                return self._refuse(DATASET_MISMATCH, event, uid, calling, reason, f"{what} differs from the request's")
        return None

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
        event.assoc.network_timeout = IDLE_TIMEOUT_S  # it stores films: the long idle timeout from now on
        event.assoc._medlung_bytes = 0  # the next film's bytes are counted afresh (_on_data)
        refusal = self._check_dataset(event, uid, calling)
        if refusal is not None:
            return refusal
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
            self._jobs[key] = QueueEntry(key, calling_ae=calling)
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
            transfer_syntax=str(event.context.transfer_syntax),
            seconds=round(time.perf_counter() - started, 3),
            waiting=self._waiting,
        )
        return SUCCESS


def _request_uids(event) -> tuple[str, str]:
    request = event.request
    return str(request.AffectedSOPClassUID or "").strip(), str(request.AffectedSOPInstanceUID or "").strip()


def _guarded_server_class():
    """pynetdicom's threaded server, with the node's address check and the TLS handshake in the peer's thread.

    pynetdicom does the TLS handshake in its accept loop, where one silent or
    plain-text peer would hold up every other; here the loop only accepts,
    checks the address (:meth:`StorageNode._peer_allowed`) and starts a
    thread, and that thread does the handshake (:meth:`StorageNode._tls_handshake`).
    """
    from pynetdicom.transport import ThreadedAssociationServer

    class GuardedAssociationServer(ThreadedAssociationServer):
        def __init__(self, *args, node: Receiving, **kwargs) -> None:
            self.node = node
            super().__init__(*args, **kwargs)

        def get_request(self):
            return cast(socket.socket, self.socket).accept()  # open while serving (pynetdicom casts it so too)

        def verify_request(self, request, client_address) -> bool:
            return self.node._peer_allowed(client_address)

        def process_request_thread(self, request, client_address) -> None:
            try:
                if self.ssl_context is not None:
                    request = self.node._tls_handshake(request, client_address, self.ssl_context)
                    if request is None:
                        return
                super().process_request_thread(request, client_address)
            finally:
                self.node._peer_done(client_address)

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
