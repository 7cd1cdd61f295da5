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
#: one association.
SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700
FILM_TOO_LARGE, ASSOCIATION_FULL = 0xA701, 0xA702
#: Associations served at once.
ASSOCIATIONS = 16
#: Seconds allowed for association negotiation, and for silence on an open association (a busy
#: node may take long to fsync a 40 MB film while four peers send at once).
ACSE_TIMEOUT_S, IDLE_TIMEOUT_S = 30, 300
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
        ae.maximum_associations = ASSOCIATIONS
        ae.acse_timeout = ACSE_TIMEOUT_S
        ae.dimse_timeout = ae.network_timeout = IDLE_TIMEOUT_S
        ae.maximum_pdu_size = MAX_PDU_BYTES
        handlers: list[evt.EventHandlerType] = [
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
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
        try:
            address = ipaddress.ip_address(client_address[0])
        except ValueError:
            address = None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address is not None and any(address in network for network in self.config.networks):
            return True
        self.log("association-refused", "warning", address=_peer(client_address), reason="address not in --allow-host")
        return False

    def _tls_handshake(self, raw, client_address, context):
        """The TLS socket of an accepted connection, or None (logged, closed) when the handshake fails."""
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
