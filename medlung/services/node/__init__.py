"""``medlung serve``: a DICOM node that segments the films a PACS sends and stores the SEGs back.

One concern a module:

* :mod:`~medlung.services.node.config`: :class:`ServeConfig` (what a node is, checked), who may reach it;
* :mod:`~medlung.services.node.receiving`: associations, TLS handshakes, the C-STORE handler;
* :mod:`~medlung.services.node.segmenting`: the worker thread;
* :mod:`~medlung.services.node.forwarding`: the sender thread (``--forward``);
* :mod:`~medlung.services.node.spool`: the durable queue on disk;
* :mod:`~medlung.services.node.storage_node`: :class:`StorageNode` (life cycle), :func:`serve`, logging, status.
"""

from __future__ import annotations

from medlung.services.node.config import (
    NODE_FORMATS,
    ServeConfig,
    WorkdirBusyError,
    exposure_warning,
    is_loopback,
    node_settings,
    parse_networks,
)
from medlung.services.node.storage_node import (
    LOGGER,
    PYNETDICOM_LEVEL,
    PYNETDICOM_RECORDS,
    PYNETDICOM_WINDOW_S,
    StorageNode,
    node_logging,
    queue_status,
    serve,
)

__all__ = [
    "LOGGER",
    "NODE_FORMATS",
    "PYNETDICOM_LEVEL",
    "PYNETDICOM_RECORDS",
    "PYNETDICOM_WINDOW_S",
    "ServeConfig",
    "StorageNode",
    "WorkdirBusyError",
    "exposure_warning",
    "is_loopback",
    "node_logging",
    "node_settings",
    "parse_networks",
    "queue_status",
    "serve",
]
