"""Event logs through the standard :mod:`logging` module: text lines, or one JSON object per line (``--json-logs``).

An *event* is a short name plus fields (``received key=1.2.3 bytes=5120``).
Code logs it with :func:`log_event` on a ``logging.Logger``; the formatters
here turn the record into a line:

* :class:`TextFormatter`: ``2026-01-02T03:04:05.678Z INFO    received key=1.2.3 bytes=5120``
* :class:`JsonFormatter`: ``{"time": "2026-01-02T03:04:05.678+00:00", "level": "info", "event": "received", ...}``

Records of other libraries (pynetdicom's warnings, say) that reach the same
handler get the same form, with their message as the event.
:func:`routed` sends chosen loggers to a handler for a while (the run of a
``medlung serve`` node), then leaves them as they were: nothing is
configured at import, and no library's records are silenced.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

__all__ = ["JsonFormatter", "TextFormatter", "Throttle", "event_handler", "log_event", "quieted", "routed"]

_FIELDS = "medlung_fields"


def log_event(logger: logging.Logger, event: str, level: str = "info", **fields) -> None:
    """Log ``event`` with ``fields`` at ``level`` (``"info"``, ``"warning"``, ``"error"``...)."""
    logger.log(logging.getLevelName(level.upper()), event, extra={_FIELDS: fields})


def _time(record: logging.LogRecord) -> datetime:
    return datetime.fromtimestamp(record.created, timezone.utc)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC, ms), level, event, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        content = {
            "time": _time(record).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **getattr(record, _FIELDS, {}),
        }
        if record.name and not record.name.startswith("medlung"):
            content.setdefault("logger", record.name)
        return json.dumps(content, default=str)


class TextFormatter(logging.Formatter):
    """``<time>Z <LEVEL> <event> key=value ...`` (values with spaces are quoted)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, _FIELDS, {})
        details = " ".join(f"{k}={_text(v)}" for k, v in fields.items() if v is not None)
        stamp = _time(record).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        return f"{stamp}Z {record.levelname:7s} {record.getMessage()} {details}".rstrip()


class _QuietStreamHandler(logging.StreamHandler):
    """A stream handler for which a closed pipe is not an error (a node must not stop because its log reader did)."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def event_handler(json_logs: bool = False, stream=None) -> logging.Handler:
    """A handler writing events to ``stream`` (default standard error) as JSON or text lines."""
    handler = _QuietStreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    return handler


class _AtLeast(logging.Filter):
    """Lets through the records of each named logger (and its children) at or above that logger's level."""

    def __init__(self, levels: dict[str, int]) -> None:
        super().__init__()
        self.levels = levels

    def filter(self, record: logging.LogRecord) -> bool:
        for name, level in self.levels.items():
            if record.name == name or record.name.startswith(name + "."):
                return record.levelno >= level
        return True


class Throttle(logging.Filter):
    """At most ``count`` records per ``seconds`` from each logger under ``prefixes``; the rest are dropped.

    A peer can make a library log once per few bytes it sends (pynetdicom
    logs one error per 6 bytes of a stream that is not DICOM): the first
    records of a burst get through, and the first one let through after it
    carries ``suppressed=<n>``, the number dropped since. Records of other
    loggers pass untouched.

    Parameters
    ----------
    prefixes : sequence of str
        Logger names (``"pynetdicom"`` also covers ``"pynetdicom.dul"``); each
        logger under them is counted on its own.
    count : int
        Records let through per window.
    seconds : float
        Length of the window, in seconds.
    clock : callable, optional
        Seconds, monotonic (default :func:`time.monotonic`).
    """

    def __init__(self, prefixes, count: int, seconds: float, clock=time.monotonic) -> None:
        super().__init__()
        self.prefixes, self.count, self.seconds, self.clock = tuple(prefixes), count, seconds, clock
        self._windows: dict[str, list] = {}  # logger name: [window start, let through, dropped]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not any(record.name == p or record.name.startswith(p + ".") for p in self.prefixes):
            return True
        with self._lock:
            now = self.clock()
            window = self._windows.setdefault(record.name, [now, 0, 0])
            if now - window[0] >= self.seconds:
                window[0], window[1] = now, 0
            if window[1] >= self.count:
                window[2] += 1
                return False
            window[1] += 1
            dropped, window[2] = window[2], 0
        if dropped:
            setattr(record, _FIELDS, {**getattr(record, _FIELDS, {}), "suppressed": dropped})
        return True


@contextmanager
def routed(handler: logging.Handler, levels: dict[str, int]):
    """While inside, ``handler`` writes the records of each logger in ``levels`` at that level or above.

    Each logger keeps its other handlers and its propagation, and its level
    is only ever lowered (to let the wanted records be made), never raised:
    nothing any other handler receives is lost. On exit every logger's level
    and handlers are what they were.

    Parameters
    ----------
    handler : logging.Handler
        E.g. :func:`event_handler`.
    levels : dict
        Logger name to lowest level written, e.g. ``{"medlung.serve": logging.INFO,
        "pynetdicom": logging.WARNING}``.

    Yields
    ------
    logging.Handler
        ``handler``.
    """
    loggers = {name: logging.getLogger(name) for name in levels}
    saved = {name: logger.level for name, logger in loggers.items()}
    gate = _AtLeast(dict(levels))
    handler.addFilter(gate)
    try:
        for name, logger in loggers.items():
            if logger.getEffectiveLevel() > levels[name]:
                logger.setLevel(levels[name])
            logger.addHandler(handler)
        yield handler
    finally:
        for name, logger in loggers.items():
            logger.removeHandler(handler)
            logger.setLevel(saved[name])
        handler.removeFilter(gate)
        handler.flush()


@contextmanager
def quieted(names, level: int = logging.CRITICAL):
    """While inside, the loggers ``names`` make records at ``level`` and above only; on exit their levels are back.

    For a command's own chatter controls (``--verbose``), never at import.
    """
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(level)
        yield
    finally:
        for logger, was in zip(loggers, saved):
            logger.setLevel(was)


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text
