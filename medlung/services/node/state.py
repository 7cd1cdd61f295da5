"""The state the parts of a node share: one declaration, so each part (receiving, segmenting, forwarding) is typed.

:class:`~medlung.services.node.StorageNode` sets every attribute in its
constructor; the parts are mixins that read and change them under ``_lock``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from medlung.services.node.config import ServeConfig
from medlung.services.node.spool import QueueEntry, Spool


class NodeState:
    """Attributes shared by the node's receivers, worker and sender (see :class:`~medlung.services.node.StorageNode`).

    Attributes
    ----------
    config : ServeConfig
    segmenter : medlung.inference.Segmenter or None
        The model, loaded by ``start``.
    log : callable
        ``log(event, level="info", **fields)``.
    spool : Spool
        The durable queue on disk.
    port : int or None
        The port listened on, once listening.
    """

    config: ServeConfig
    segmenter: Any
    log: Callable[..., None]
    spool: Spool
    port: int | None
    _lock: threading.Lock
    _jobs: dict[str, QueueEntry]  # films in incoming or outgoing
    _waiting: int  # films in incoming (received, not yet segmented)
    _to_segment: queue.Queue[str]
    _to_send: list[str]
    _send_wakeup: threading.Condition
    _stopping: threading.Event
    _resend_wait: float
    _destination_down_until: float
    _server: Any
    _loader: Any  # reads a film in a child process (medlung.services.node.decoding.IsolatedLoader)
    _handshakes: threading.BoundedSemaphore
    _peers: dict[str, int]  # connections open per peer address
    _memory: int  # bytes the node may use (ServeConfig.memory_plan)
    _associations: int  # associations served at once

    def _prune_done(self) -> None:  # pragma: no cover - Forwarding defines it
        raise NotImplementedError

    def request_stop(self) -> None:  # pragma: no cover - StorageNode defines it
        raise NotImplementedError
