"""Forwarding: the node's sender thread stores each SEG (and its SR) on ``--forward``, retrying with backoff."""

from __future__ import annotations

import time

from medlung.errors import MedlungError
from medlung.services.node.spool import QueueEntry
from medlung.services.node.state import NodeState

#: Delivery: SEGs per association, and associations retried inside one attempt.
SEND_RETRIES, SEND_BACKOFF_S = 1, 0.5
#: The first wait after an undelivered SEG; doubled each time up to ``resend_interval``.
FIRST_RESEND_WAIT_S = 1.0


class Forwarding(NodeState):
    """The sender of :class:`~medlung.services.node.StorageNode` (a mixin: it shares the node's state)."""

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

    def _prune_done(self) -> None:
        """Apply the retention of done/ (``keep_done_days``, ``keep_done``) and log what went."""
        config = self.config
        if config.keep_done_days is None and config.keep_done is None:
            return
        max_age = None if config.keep_done_days is None else config.keep_done_days * 86400.0
        pruned = self.spool.prune_done(max_age, config.keep_done)
        if pruned:
            self.log("pruned", deleted=len(pruned), keep_done_days=config.keep_done_days, keep_done=config.keep_done)

    def _next_to_send(self) -> tuple[str | None, float]:
        """The first SEG due (under the lock), or None and how long to wait."""
        now = time.monotonic()
        if not self._to_send:
            return None, 1.0
        if now < self._destination_down_until:
            return None, self._destination_down_until - now
        due = [k for k in self._to_send if self._jobs.get(k, QueueEntry(k)).next_attempt <= now]
        if not due:
            return None, max(0.05, min(self._jobs[k].next_attempt for k in self._to_send if k in self._jobs) - now)
        return due[0], 0.0

    def _send(self, key: str) -> None:
        from medlung.pacs.send import send_cstore

        started = time.perf_counter()
        seg, *others = self.spool.results("outgoing", key)
        tls = None if self.config.forward_plain else self.config.tls
        result, *other_results = send_cstore(
            [seg, *(path for path in others if path.exists())],  # the SR of a SEG queued by an older medlung: none
            self.config.forward,
            calling_ae=self.config.ae_title,
            retries=SEND_RETRIES,
            backoff=SEND_BACKOFF_S,
            timeout=self.config.send_timeout,
            tls=tls,
        )
        job = self._jobs.get(key) or QueueEntry(key)
        job.send_attempts += result.attempts
        if result.attempts == 0:  # the SEG file itself is missing or unreadable
            raise MedlungError(result.message)
        # a result the destination did not answer is sent again with the SEG (it keeps one copy per UID)
        unanswered = next((r for r in other_results if not r.ok and r.status is None), None)
        if result.ok and unanswered is not None:
            result = unanswered
        if result.ok:
            for refused in (r for r in other_results if not r.ok):  # refused outright: the SEG is delivered anyway
                self.log(
                    "result-refused",
                    "warning",
                    key=key,
                    file=refused.path.name,
                    destination=self.config.forward,
                    reason=refused.message,
                )
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
                results=1 + sum(r.ok for r in other_results),
                attempts=job.send_attempts,
                seconds=round(time.perf_counter() - started, 3),
                total_seconds=round(time.monotonic() - job.received, 3),
            )
            self._prune_done()
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
