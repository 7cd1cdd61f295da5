"""Atomic output files: written beside their destination, then moved into place.

A reader never sees half a file, a crash leaves no partial output, an
existing file is replaced only when the caller says so, and a link planted
where a file goes is replaced, never followed (nothing is written outside the
output folder). This is medlung's one
way to write a file: outputs, reports, training checkpoints and metrics,
bundle files, and (``durable=True``, with fsyncs) the serve queue.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from medlung.errors import OutputExistsError


def check_writable(path: str | Path, overwrite: bool) -> Path:
    """Raise :class:`OutputExistsError` if ``path`` exists (a link counts, even a dangling one) and not ``overwrite``."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError("already exists", path, "Use --overwrite to replace it, or choose another -o.")
    return path


#: Permissions of the private folder a file is written in before it is moved into place (owner only).
PRIVATE_FOLDER_MODE = 0o700


def write_atomically(
    path: str | Path,
    write: Callable[[Path], object],
    overwrite: bool = False,
    durable: bool = False,
    mode: int | None = None,
) -> Path:
    """Call ``write(temporary_path)`` and move the result to ``path``.

    The temporary file has ``path``'s own name (writers that go by the suffix,
    ``.nii.gz`` or ``.png``, see the right one) inside a new private folder
    beside ``path`` (``.<name>.<random>.part``, created with ``O_EXCL``
    semantics and mode 0700 by :func:`tempfile.mkdtemp`), so no other user can
    put a link where the writer writes. The finished file must be a regular
    file; it is then *renamed* to ``path`` (a hard link when not
    overwriting), which replaces a link found at ``path`` instead of writing
    through it: a symbolic link planted in the output folder never makes
    medlung write outside it (``O_NOFOLLOW`` semantics).

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
    mode : int, optional
        Permission bits of the file (e.g. ``0o600``); default ``0o666`` less the umask.

    Returns
    -------
    Path
    """
    path = check_writable(path, overwrite)
    private = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    temporary = private / path.name
    try:
        write(temporary)
        if not stat.S_ISREG(os.lstat(temporary).st_mode):
            raise OSError(f"{path}: the writer made something other than a regular file")
        os.chmod(temporary, (0o666 & ~current_umask()) if mode is None else mode)
        if durable:
            fsync_file(temporary)
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path, follow_symlinks=False)  # fails if the name (even a link) appeared meanwhile
            except FileExistsError:
                raise OutputExistsError(
                    "already exists", path, "Use --overwrite to replace it, or choose another -o."
                ) from None
            except OSError:  # file systems without hard links
                check_writable(path, overwrite=False)
                os.replace(temporary, path)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    if durable:
        fsync_folder(path.parent)
    return path


def open_for_appending(path: str | Path, overwrite: bool = False) -> TextIO:
    """A new text file at ``path``, open for writing line by line (a report that grows as films finish).

    The file is created empty in a private folder (see :func:`write_atomically`)
    and renamed to ``path`` before anything is written to it, so it is never
    reached through a link planted at ``path``: the open file is the one in
    the output folder.

    Parameters
    ----------
    path : str or Path
        The file; its folder must exist.
    overwrite : bool
        Replace an existing ``path`` (a link found there is replaced, never followed).

    Returns
    -------
    file object
        Text mode, ``newline=""``, UTF-8; the caller closes it.
    """
    path = check_writable(path, overwrite)
    private = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    temporary = private / path.name
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        handle = os.open(temporary, flags, 0o666 & ~current_umask())
        stream = os.fdopen(handle, "w", newline="", encoding="utf-8")
        try:
            if overwrite:
                os.replace(temporary, path)
            else:
                try:
                    os.link(temporary, path, follow_symlinks=False)
                except FileExistsError:
                    raise OutputExistsError(
                        "already exists", path, "Use --overwrite to replace it, or choose another -o."
                    ) from None
        except BaseException:
            stream.close()
            raise
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return stream


def private_folder(path: str | Path) -> Path:
    """Create ``path`` (and missing parents) readable by its owner only (0700), or make an existing one so.

    Returns
    -------
    Path
    """
    path = Path(path)
    path.mkdir(mode=PRIVATE_FOLDER_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_FOLDER_MODE:
        os.chmod(path, PRIVATE_FOLDER_MODE)
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
