"""Atomic output files: written beside their destination, then moved into place.

A reader never sees half a file, a crash leaves no partial output, and an
existing file is replaced only when the caller says so. This is medlung's one
way to write a file: outputs, reports, training checkpoints and metrics,
bundle files, and (``durable=True``, with fsyncs) the serve queue.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from medlung.errors import OutputExistsError


def check_writable(path: str | Path, overwrite: bool) -> Path:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is False."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("already exists", path, "Use --overwrite to replace it, or choose another -o.")
    return path


def write_atomically(
    path: str | Path, write: Callable[[Path], object], overwrite: bool = False, durable: bool = False
) -> Path:
    """Call ``write(temporary_path)`` and move the result to ``path``.

    Parameters
    ----------
    path : str or Path
        Destination; its folder must exist.
    write : callable
        Writes the whole file at the path it is given.
    overwrite : bool
        Replace an existing ``path``; otherwise :class:`OutputExistsError`
        (also when the file appears while writing).
    durable : bool
        Also fsync the file before it is moved into place and the folder
        after, so that the file survives a power cut once this returns.

    Returns
    -------
    Path
    """
    path = check_writable(path, overwrite)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp creates 0600
        if durable:
            fsync_file(temporary)
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)  # fails if the file appeared meanwhile
            except FileExistsError:
                raise OutputExistsError(
                    "already exists", path, "Use --overwrite to replace it, or choose another -o."
                ) from None
            except OSError:  # file systems without hard links
                check_writable(path, overwrite=False)
                os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    if durable:
        fsync_folder(path.parent)
    return path


def write_text_atomically(path: str | Path, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`write_atomically`."""
    return write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"), overwrite)


def fsync_file(path: str | Path) -> None:
    """Make a file's content durable."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: str | Path) -> None:
    """Make a folder's entries (new names, renames, deletions) durable."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


#: os.umask can only be read by setting it: two threads doing so at once could leave the process with the wrong one.
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's file-mode creation mask (e.g. ``0o022``).

    Read from ``/proc/self/status`` where the kernel reports it (Linux 4.7+),
    which changes nothing; elsewhere by setting and restoring it, under a
    lock so that medlung's own writer threads cannot interleave there.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask
