"""Segmenting: the node's worker thread, one film at a time, through the pipeline's ``segment_one``.

Each film is read in a child process under a memory and a time limit
(:mod:`medlung.services.node.decoding`), and its attempt is recorded on disk
before it starts (:meth:`~medlung.services.node.spool.Spool.mark_attempt`), so
a film that takes the node down is not retried forever.
"""

from __future__ import annotations

import queue
import time
import warnings

from medlung.services.node.state import NodeState


class Segmenting(NodeState):
    """The worker of :class:`~medlung.services.node.StorageNode` (a mixin: it shares the node's state)."""

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
        row = {"status": "ok"}
        # results written before a crash: do not segment again (a SEG without its SR: only the SR is written)
        resumed = all(result.exists() for result in self.spool.results("outgoing", key))
        if not resumed:
            film = self.spool.film("incoming", key)
            attempt = self.spool.mark_attempt(key)  # durable: a crash from here on is counted at the next start
            if attempt > 1:
                self.log("retrying", "warning", key=key, attempt=attempt, reason="an earlier attempt outlived a crash")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = segment_one(
                    film, self.spool.folder("outgoing") / key, self.segmenter, self.config.settings, loader=self._loader
                )
        if row["status"] == "error":
            reason = row.get("error") or "segmentation failed"
            self.spool.fail(key, reason)
            with self._lock:
                self._jobs.pop(key, None)
                self._waiting -= 1
            self.log(
                "failed",
                "error",
                key=key,
                stage="segment",
                reason=reason,
                reason_file=self.spool.reason(key),
                reader_peak_mb=self._loader.last_peak_mb,
                seconds=round(time.perf_counter() - started, 3),
            )
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
            reader_peak_mb=None if resumed else self._loader.last_peak_mb,
            **fields,
        )
