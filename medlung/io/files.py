"""Opening input files safely: regular files only, never blocking, detached data files inside their header's folder.

``open(path)`` on a FIFO waits for a writer forever, and ``/dev/zero`` never
ends; a film is always a regular file. :func:`open_regular` opens with
``O_NONBLOCK`` (a FIFO then opens at once) and checks with ``fstat`` on the
opened descriptor, so what is checked is what is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from medlung.errors import UnreadableFileError

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | Path) -> BinaryIO:
    """Open ``path`` for reading in binary mode if, and only if, it is a regular file.

    Raises
    ------
    UnreadableFileError
        The path does not exist, cannot be opened, or is a FIFO, device, socket or folder.
    """

    def opener(name: str, flags: int) -> int:
        return os.open(name, flags | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))

    path = Path(path)
    try:
        handle = open(path, "rb", opener=opener)
    except FileNotFoundError:
        raise UnreadableFileError("file not found", path, "Check the path.") from None
    except IsADirectoryError:
        raise UnreadableFileError("is a folder, not a file", path, "Give the films inside it.") from None
    except OSError as exc:
        raise UnreadableFileError(
            f"cannot be opened ({exc.strerror})", path, "Check the path and its permissions."
        ) from None
    mode = os.fstat(handle.fileno()).st_mode
    if not stat.S_ISREG(mode):
        handle.close()
        raise UnreadableFileError(
            f"is {_kind(mode)}, not a regular file", path, "Give a film file; medlung reads only regular files."
        )
    try:  # reads block again (a regular file never blocks, but Python's buffered reads expect blocking mode)
        os.set_blocking(handle.fileno(), True)
    except OSError:  # pragma: no cover - a regular file always allows it
        pass
    return handle


def check_regular(path: str | Path) -> int:
    """Raise :class:`UnreadableFileError` unless ``path`` is a regular file; return its size in bytes."""
    with open_regular(path) as handle:
        return os.fstat(handle.fileno()).st_size


def detached_file(header: Path, name: str, regular: bool = True) -> Path:
    """The data file a detached header (MetaImage ``ElementDataFile``, NRRD ``data file``) names, checked.

    Parameters
    ----------
    header : Path
        The header file.
    name : str
        The file name as written in the header.
    regular : bool
        Also check that it is a regular file (off for a file-name pattern).

    Returns
    -------
    Path
        The data file, resolved: inside the header's folder (or a sub-folder of it) and a regular file.

    Raises
    ------
    UnreadableFileError
        When the name is absolute, leaves the header's folder (``..``, a symbolic link out of it) or is
        not a regular file.
    """
    folder = header.resolve().parent
    candidate = Path(name)
    target = (folder / candidate).resolve()
    if candidate.is_absolute() or not target.is_relative_to(folder):
        raise UnreadableFileError(
            f"its header names the data file {name!r}, outside the header's folder",
            header,
            "Keep a detached header's data file beside it (medlung reads no file elsewhere).",
        )
    if regular:
        check_regular(target)
    return target
