"""The durable work queue of ``medlung serve``: four folders and a few renames.

Layout of the work folder ``DIR``::

    DIR/incoming/<key>.dcm          films received, not yet segmented
    DIR/incoming/<key>.attempt      the worker started segmenting it (attempts so far); gone once it is done
    DIR/outgoing/<key>_seg.dcm      SEGs written, not yet delivered (their film beside them: <key>.dcm)
    DIR/outgoing/<key>_sr.dcm       the SEG's measurement report (DICOM SR), delivered with it
    DIR/outgoing/<key>.sent         the destination stored the SEG; only the move to done/ is left
    DIR/done/<key>.dcm, <key>_seg.dcm, <key>_sr.dcm               delivered
    DIR/failed/<key>.dcm, [<key>_seg.dcm, <key>_sr.dcm,] <key>.reason.txt   given up, with the reason

The results of a film are its SEG and the other outputs the spool is told of
(``outputs``: the node writes the SR too); a film counts as segmented when all
of them are written (the SEG stays the file that names the state).

``<key>`` is the film's SOP Instance UID (a hash of it when it is not a
plain UID). Every state is the presence of files, every transition is an
atomic rename (or an atomic, fsynced new file) followed by an fsync of the
folders concerned, so that after a crash or a kill at any point
:meth:`Spool.recover` finds each film in exactly one well-defined state:

===============================================  =========================================
found after a crash                               resumed as
===============================================  =========================================
``.*.part`` temporary file                        deleted (the sender got no success: it resends)
film in incoming, no SEG                          segmented
film in incoming and all results in outgoing      film moved to outgoing (not segmented again)
film in incoming, SEG but not every result         segmented (only the missing results are written)
SEG in outgoing, no ``.sent``                     sent
``.sent`` in outgoing                             SEG and film moved to done (not sent again)
film in outgoing without SEG or ``.sent``         moved back to incoming and segmented
film in incoming with ``.attempt``                segmented again, or moved to failed with the
                                                  reason once ``max_attempts`` attempts
                                                  outlived a crash (no crash loop)
===============================================  =========================================

Every folder is created readable by the node's user only (0700: the films
carry patient names) and the queue's own files are written 0600.

The one window that can still send a SEG twice is a kill after the
destination answered and before ``<key>.sent`` reached the disk (a few
milliseconds); the SEG's UIDs are deterministic, so a PACS keeps it once.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from medlung.atomic import fsync_file as _fsync_file
from medlung.atomic import fsync_folder, private_folder, write_atomically
from medlung.uids import file_key

__all__ = ["SEG_SUFFIX", "SR_SUFFIX", "STATES", "Spool", "fsync_folder"]

#: The queue folders, in the order a film goes through them (failed is the side exit).
STATES = ("incoming", "outgoing", "done", "failed")
#: File-name suffix of a film's SEG (``<key>_seg.dcm``) and of its SR.
SEG_SUFFIX, SR_SUFFIX = "_seg.dcm", "_sr.dcm"
#: Permissions of the queue's files (the folders are 0700).
FILE_MODE = 0o600
#: Attempts at segmenting one film that may outlive a crash of the node before the film goes to failed.
MAX_ATTEMPTS = 2


class Spool:
    """The queue folders under one work folder.

    Parameters
    ----------
    root : str or Path
        The work folder; created with its four state folders.
    outputs : tuple of str
        File-name suffixes of a film's results, the SEG's first (default: the SEG alone; the node adds
        :data:`SR_SUFFIX`).

    Notes
    -----
    The methods are not locked: the node calls each transition of a film
    from one thread at a time (receiver, then worker, then sender).
    """

    def __init__(self, root: str | Path, outputs: tuple[str, ...] = (SEG_SUFFIX,)) -> None:
        if not outputs or outputs[0] != SEG_SUFFIX:
            raise ValueError(f"outputs must start with the SEG's suffix {SEG_SUFFIX!r}; got {outputs!r}.")
        self.root = private_folder(root)
        self.outputs = tuple(outputs)
        for state in STATES:
            private_folder(self.root / state)

    # --- names ---------------------------------------------------------------------------------
    @staticmethod
    def key_for(sop_instance_uid: str) -> str:
        """The file-name key of an instance: its UID, or a hash when it is not a plain UID (:func:`medlung.uids.file_key`)."""
        return file_key(sop_instance_uid)

    def folder(self, state: str) -> Path:
        """``DIR/<state>``."""
        return self.root / state

    def film(self, state: str, key: str) -> Path:
        """The film file of ``key`` in ``state``."""
        return self.root / state / f"{key}.dcm"

    def seg(self, state: str, key: str) -> Path:
        """The SEG file of ``key`` in ``state``."""
        return self.root / state / f"{key}{SEG_SUFFIX}"

    def results(self, state: str, key: str) -> list[Path]:
        """The result files of ``key`` in ``state`` (the SEG first), whether they exist or not."""
        return [self.root / state / f"{key}{suffix}" for suffix in self.outputs]

    def sent_marker(self, key: str) -> Path:
        """The file saying that the SEG of ``key`` was stored by the destination."""
        return self.root / "outgoing" / f"{key}.sent"

    def reason(self, key: str) -> Path:
        """The reason file of a failed film."""
        return self.root / "failed" / f"{key}.reason.txt"

    def attempt_marker(self, key: str) -> Path:
        """The file saying that the worker started segmenting ``key`` (and how many times so far)."""
        return self.root / "incoming" / f"{key}.attempt"

    def attempts(self, key: str) -> int:
        """Attempts at segmenting ``key`` that started (0 when none)."""
        try:
            return int(self.attempt_marker(key).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def mark_attempt(self, key: str) -> int:
        """Record, durably, that an attempt at segmenting ``key`` starts; returns its number (1, 2 ...)."""
        number = self.attempts(key) + 1
        self._write_durably(self.attempt_marker(key), f"{number} attempt(s) started\n".encode())
        return number

    # --- transitions ---------------------------------------------------------------------------
    def receive(self, key: str, data: bytes) -> Path:
        """Write a received instance to ``incoming/<key>.dcm``: temporary file, fsync, rename, fsync folder.

        Returns
        -------
        Path
            The film in incoming. When this returns, the film survives a crash.
        """
        target = self.film("incoming", key)
        self._write_durably(target, data)
        return target

    def segmented(self, key: str) -> Path:
        """Make the new results durable, then move the film from incoming to outgoing.

        Returns
        -------
        Path
            The SEG in outgoing.
        """
        seg = self.seg("outgoing", key)
        for result in self.results("outgoing", key):
            if result == seg or result.exists():
                _fsync_file(result)
        outgoing = self.folder("outgoing")
        fsync_folder(outgoing)
        film = self.film("incoming", key)
        if film.exists():
            os.replace(film, self.film("outgoing", key))
            fsync_folder(outgoing)
        self.attempt_marker(key).unlink(missing_ok=True)
        fsync_folder(self.folder("incoming"))
        return seg

    def mark_sent(self, key: str) -> None:
        """Record that the destination stored the SEG (the commit point of a delivery), then move it to done."""
        self._write_durably(self.sent_marker(key), b"stored\n")
        self.finish(key)

    def finish(self, key: str) -> None:
        """Move a delivered SEG (with the other results) and its film from outgoing to done, then drop ``.sent``."""
        done = self.folder("done")
        for source, target in (
            *zip(self.results("outgoing", key), self.results("done", key), strict=True),
            (self.film("outgoing", key), self.film("done", key)),
        ):
            if source.exists():
                os.replace(source, target)
        fsync_folder(done)
        self.sent_marker(key).unlink(missing_ok=True)
        fsync_folder(self.folder("outgoing"))

    def fail(self, key: str, reason: str) -> Path:
        """Write ``failed/<key>.reason.txt``, then move the film (and its results, if any) to failed.

        Returns
        -------
        Path
            The reason file.
        """
        text = " ".join(str(reason).split()) + "\n"
        self._write_durably(self.reason(key), text.encode())
        for state in ("incoming", "outgoing"):
            for source, target in (
                (self.film(state, key), self.film("failed", key)),
                *zip(self.results(state, key), self.results("failed", key), strict=True),
            ):
                if source.exists():
                    os.replace(source, target)
        self.sent_marker(key).unlink(missing_ok=True)
        self.attempt_marker(key).unlink(missing_ok=True)
        for state in ("failed", "incoming", "outgoing"):
            fsync_folder(self.folder(state))
        return self.reason(key)

    def prune_done(self, max_age_s: float | None = None, max_count: int | None = None, now: float | None = None):
        """Delete delivered films and results from done/: older than ``max_age_s``, then the oldest over ``max_count``.

        Parameters
        ----------
        max_age_s : float, optional
            Keep what was delivered within this many seconds (by the SEG's modification time).
        max_count : int, optional
            Keep at most this many delivered films.
        now : float, optional
            The current time (``time.time()``).

        Returns
        -------
        list of str
            The keys deleted, oldest first.
        """
        if max_age_s is None and max_count is None:
            return []
        now = time.time() if now is None else now
        delivered = _oldest_first(self.folder("done").glob(f"*{SEG_SUFFIX}"))
        keys = [p.name[: -len(SEG_SUFFIX)] for p in delivered]
        ages = {}
        for path, key in zip(delivered, keys):
            try:
                ages[key] = now - path.stat().st_mtime
            except FileNotFoundError:
                ages[key] = 0.0
        doomed = [k for k in keys if max_age_s is not None and ages[k] > max_age_s]
        kept = [k for k in keys if k not in doomed]
        if max_count is not None and len(kept) > max_count:
            doomed += kept[: len(kept) - max_count]
        for key in doomed:
            for path in (*self.results("done", key), self.film("done", key)):
                path.unlink(missing_ok=True)
        if doomed:
            fsync_folder(self.folder("done"))
        return doomed

    def recover(self, max_attempts: int = MAX_ATTEMPTS) -> tuple[list[str], list[str]]:
        """Bring every film left by an earlier run to a resumable state (see the module's table).

        Parameters
        ----------
        max_attempts : int
            A film whose ``max_attempts``-th attempt at segmenting outlived a
            crash of the node goes to failed, with the reason, instead of
            being tried again.

        Returns
        -------
        to_segment : list of str
            Keys of films in incoming, oldest first.
        to_send : list of str
            Keys of SEGs in outgoing, oldest first.
        """
        for state in STATES:
            for leftover in self.folder(state).glob(".*.part"):  # a write cut short (a private folder since #28)
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
        outgoing = self.folder("outgoing")
        for marker in sorted(outgoing.glob("*.sent")):
            self.finish(marker.name[: -len(".sent")])
        for seg in sorted(outgoing.glob(f"*{SEG_SUFFIX}")):
            key = seg.name[: -len(SEG_SUFFIX)]
            if self.film("incoming", key).exists() and all(p.exists() for p in self.results("outgoing", key)):
                self.segmented(key)
        for film in sorted(outgoing.glob("*.dcm")):
            key = film.name[: -len(".dcm")]
            if (
                not any(film.name.endswith(suffix) for suffix in self.outputs)
                and not self.seg("outgoing", key).exists()
            ):
                os.replace(film, self.film("incoming", key))
        fsync_folder(outgoing)
        fsync_folder(self.folder("incoming"))
        for marker in sorted(self.folder("incoming").glob("*.attempt")):
            key = marker.name[: -len(".attempt")]
            if not self.film("incoming", key).exists():
                marker.unlink(missing_ok=True)
            elif self.attempts(key) >= max_attempts:
                self.fail(
                    key,
                    f"the node stopped (a crash, the out-of-memory killer or a kill) while segmenting this film, "
                    f"{self.attempts(key)} time(s): not tried again; move it back to incoming/ to retry",
                )
        to_segment = [p.name[: -len(".dcm")] for p in _oldest_first(self.folder("incoming").glob("*.dcm"))]
        waiting = set(to_segment)  # a SEG whose film still waits for its other results is sent once they are written
        to_send = [
            key
            for key in (p.name[: -len(SEG_SUFFIX)] for p in _oldest_first(outgoing.glob(f"*{SEG_SUFFIX}")))
            if key not in waiting
        ]
        return to_segment, to_send

    def counts(self) -> dict[str, int]:
        """Films in each state: waiting to be segmented, SEGs waiting to be sent, delivered, failed."""
        return {
            "incoming": sum(1 for _ in self.folder("incoming").glob("*.dcm")),
            "outgoing": sum(1 for _ in self.folder("outgoing").glob(f"*{SEG_SUFFIX}")),
            "done": sum(1 for _ in self.folder("done").glob(f"*{SEG_SUFFIX}")),
            "failed": sum(1 for _ in self.folder("failed").glob("*.reason.txt")),
        }

    # --- helpers -------------------------------------------------------------------------------
    def _write_durably(self, target: Path, data: bytes) -> None:
        """Temporary file beside ``target`` (``.<name>.*.part``), fsync, rename over ``target``, fsync the folder."""
        write_atomically(
            target, lambda temporary: temporary.write_bytes(data), overwrite=True, durable=True, mode=FILE_MODE
        )


def _oldest_first(paths) -> list[Path]:
    found = []
    for path in paths:
        try:
            found.append((path.stat().st_mtime_ns, path.name, path))
        except FileNotFoundError:
            continue
    return [p for _, _, p in sorted(found)]


@dataclass
class QueueEntry:
    """What the node remembers about a film while it is in the queue (in memory; the files are the truth)."""

    key: str
    received: float = field(default_factory=time.monotonic)
    calling_ae: str = ""
    send_attempts: int = 0
    next_attempt: float = 0.0
