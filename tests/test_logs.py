"""Event logs (:mod:`medlung.logs`): the line formats, and routing loggers to a handler for a while."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import datetime

from medlung.logs import Throttle, event_handler, log_event, quieted, routed


class Keep(logging.Handler):
    """A handler some application had put there before: it keeps the messages it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_routed_writes_the_chosen_levels_never_silences_and_leaves_every_logger_as_it_was():
    library, own = logging.getLogger("tests.library"), logging.getLogger("medlung.tests.own")
    kept = Keep()
    library.addHandler(kept)
    library.setLevel(logging.DEBUG)  # someone debugging the library
    own.setLevel(logging.CRITICAL)  # someone who had silenced it
    before = [(lg.level, list(lg.handlers), lg.propagate) for lg in (library, own)]
    stream = io.StringIO()
    try:
        with routed(event_handler(False, stream), {library.name: logging.WARNING, own.name: logging.INFO}):
            assert library.level == logging.DEBUG and own.level == logging.INFO  # lowered only, never raised
            library.debug("library detail")
            library.warning("library warning")
            log_event(own, "received", key="1.2.3", bytes=5120, seconds=0.25, note="two words", empty=None)
            logging.getLogger("tests.library.child").error("child error")
        library.warning("after")
        log_event(own, "gone", level="critical")
        after = [(lg.level, list(lg.handlers), lg.propagate) for lg in (library, own)]
    finally:
        library.removeHandler(kept)
        library.setLevel(logging.NOTSET)
        own.setLevel(logging.NOTSET)
    assert after == before
    lines = stream.getvalue().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", line) for line in lines)
    assert [line.split("Z ", 1)[1] for line in lines] == [
        "WARNING library warning",
        'INFO    received key=1.2.3 bytes=5120 seconds=0.250 note="two words"',
        "ERROR   child error",
    ]
    # the application's own handler got what it always got, the library's debug record included
    assert kept.messages == ["library detail", "library warning", "child error", "after"]


def test_json_lines_carry_the_fields_and_name_other_libraries():
    stream = io.StringIO()
    handler = event_handler(True, stream)
    with routed(handler, {"medlung.tests.json": logging.INFO, "tests.other": logging.WARNING}):
        log_event(logging.getLogger("medlung.tests.json"), "sent", key="k1", status="0x0000", attempts=2, empty=None)
        logging.getLogger("tests.other").warning("peer said %s", "no")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert datetime.fromisoformat(first.pop("time")).utcoffset().total_seconds() == 0
    assert first == {"level": "info", "event": "sent", "key": "k1", "status": "0x0000", "attempts": 2, "empty": None}
    assert {k: v for k, v in second.items() if k != "time"} == {
        "level": "warning",
        "event": "peer said no",
        "logger": "tests.other",
    }


def test_quieted_lasts_only_while_inside():
    chatty = logging.getLogger("tests.chatty")
    chatty.setLevel(logging.INFO)
    try:
        with quieted(["tests.chatty"]):
            assert not chatty.isEnabledFor(logging.ERROR) and chatty.isEnabledFor(logging.CRITICAL)
        assert chatty.level == logging.INFO
    finally:
        chatty.setLevel(logging.NOTSET)


def test_throttle_lets_a_few_records_a_window_through_and_says_how_many_it_dropped():
    now = [0.0]
    stream = io.StringIO()
    handler = event_handler(True, stream)
    events = logging.getLogger("medlung.tests.events")
    with routed(handler, {"tests.noisy": logging.WARNING, events.name: logging.INFO}):
        handler.addFilter(Throttle(["tests.noisy"], 2, 60.0, clock=lambda: now[0]))
        for chunk in range(5):
            logging.getLogger("tests.noisy.dul").error("chunk %d", chunk)
        logging.getLogger("tests.noisy.transport").error("another module")  # counted on its own
        for index in range(3):
            log_event(events, "received", index=index)  # not under the prefixes: never dropped
        now[0] = 59.9
        logging.getLogger("tests.noisy.dul").error("still the same window")
        now[0] = 60.0
        logging.getLogger("tests.noisy.dul").error("the next window")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["event"], r.get("suppressed")) for r in records] == [
        ("chunk 0", None),
        ("chunk 1", None),
        ("another module", None),
        ("received", None),
        ("received", None),
        ("received", None),
        ("the next window", 4),
    ]
