"""Decoding: each film the node received is read in a child process, under a memory and a time limit.

A decoder that a hostile file drives into a huge allocation (a JPEG whose
SOF marker declares 60000x60000 behind a 512x512 header) then fails in the
child, which exits and gives all of its memory back, instead of leaving
gigabytes resident in the node or getting the node killed. The child is
forked from a small server process (``multiprocessing``'s *forkserver*,
started once, with the readers imported), never from the node itself, which
holds the model and many threads. It sets ``RLIMIT_AS`` to its own size plus
the film's allowance (:meth:`IsolatedLoader.allowance`), reads the film with
:func:`medlung.io.load_film`, writes the pixels to a private scratch file and
sends the rest of the :class:`~medlung.film.Film` back through a pipe.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any, cast

import numpy as np

from medlung.errors import MedlungError, UnreadableFileError
from medlung.memory import format_bytes

#: Modules the fork server imports once, so that each child starts with the readers loaded.
PRELOAD = ("numpy", "pydicom", "medlung.io", "medlung.io.dicom", "medlung.io.png")
#: Seconds a child may take to read one film before it is killed.
DECODE_TIMEOUT_S = 60.0
#: Memory a child may use beyond the film's declared decode cost, bytes (decoder buffers, the header).
DECODE_SLACK_BYTES = 256 * 2**20

_context_lock = threading.Lock()
_context = None


def _forkserver():
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(list(PRELOAD))
            _context = context
        return _context


class DecodeError(MedlungError):
    """The child process could not read the film (memory, time, crash)."""


class IsolatedLoader:
    """``load_film`` in a child process under a memory and a time limit (see the module notes).

    Parameters
    ----------
    scratch : Path
        A private folder for the pixels on their way back (created 0700).
    limit : int
        Most bytes a child may allocate for one film, whatever its header declares.
    timeout : float
        Seconds a child may take.
    """

    def __init__(self, scratch: Path, limit: int, timeout: float = DECODE_TIMEOUT_S) -> None:
        from medlung.atomic import private_folder

        self.scratch = private_folder(scratch)
        self.limit = int(limit)
        self.timeout = float(timeout)
        #: Peak resident memory of the last child, MB (None when it died before it said).
        self.last_peak_mb: float | None = None

    def allowance(self, path: Path, decode: str = "full") -> int:
        """Bytes the child gets for ``path``: its declared decode cost plus slack, at most :attr:`limit`."""
        from medlung.io.headers import film_cost

        cost = film_cost(path, decode)
        if cost is None:
            return self.limit
        return min(self.limit, cost + DECODE_SLACK_BYTES)

    def __call__(self, path: str | Path, spacing=None, max_pixels: int | None = None, **reading):
        """The :class:`~medlung.film.Film` of ``path`` (as :func:`medlung.io.load_film` gives it).

        ``reading`` are load_film's further arguments (``decode``,
        ``working_spacing``, ``preview_side``). With ``decode="reduced"`` the
        child hands back what it decoded for the working grid and the preview
        (:class:`Prefetched`), never the native pixels: the node segments the
        film as ``medlung predict`` does, and its own memory holds no native
        film.

        Raises
        ------
        MedlungError
            The reader's own error, or :class:`DecodeError` when the child ran
            out of its memory or time or died.
        """
        path = Path(path)
        allowance = self.allowance(path, reading.get("decode", "full"))
        context = _forkserver()
        receiving, sending = context.Pipe(duplex=False)
        pixels_file = self.scratch / f"{os.getpid()}-{threading.get_ident()}-{os.urandom(4).hex()}.npy"
        child = context.Process(
            target=_decode_in_child,
            args=(sending, str(path), spacing, max_pixels, allowance, str(pixels_file), reading),
            name="medlung-decode",
            daemon=True,
        )
        child.start()
        sending.close()
        timed_out = False
        try:
            if receiving.poll(self.timeout):
                answer = receiving.recv()
            else:
                answer, timed_out = None, True
        except EOFError:  # the child died before it answered
            answer = None
        finally:
            receiving.close()
            if child.is_alive() and answer is None:
                child.kill()
            child.join(10)
        try:
            return self._film(path, answer, child.exitcode, timed_out, allowance, pixels_file, (spacing, max_pixels))
        finally:
            pixels_file.unlink(missing_ok=True)

    def _film(self, path: Path, answer, exitcode, timed_out: bool, allowance: int, pixels_file: Path, asked=()):
        from medlung.film import Film

        self.last_peak_mb = None
        if answer is None:
            if timed_out:
                reason = f"reading it took longer than {self.timeout:g} s"
            elif exitcode is not None and exitcode < 0:
                reason = f"the reader was killed by signal {-exitcode} (out of memory?)"
            else:
                reason = f"the reader died (exit status {exitcode})"
            raise DecodeError(f"could not be read: {reason}; the node is unharmed", path, "Export the film again.")
        kind, payload, peak_kb = answer
        self.last_peak_mb = round(peak_kb / 1024, 1)
        if kind == "memory":
            raise DecodeError(
                f"decoding it needs more than the {format_bytes(allowance)} allowed for a film of its header's size "
                f"({payload}): "
                "the pixel data declares more than the header does, or the film is larger than --max-memory allows",
                path,
                "Export the film again; raise --max-memory if it is real.",
            )
        if kind == "error":
            error_class, message = payload
            raise (UnreadableFileError if error_class == "UnreadableFileError" else MedlungError)(message)
        fields, reduced = payload
        if reduced is None:
            return Film(pixels=np.load(pixels_file, allow_pickle=False), **fields)
        spacing, max_pixels = asked
        prefetched = Prefetched(reduced, fields["shape"], self, path, spacing, max_pixels)
        return Film(pixels=cast(Any, prefetched), **fields["film"])  # a PixelSource (Film.pixels accepts one)


class Prefetched:
    """The pixels a reduced decode gave in the child (a :class:`medlung.film.PixelSource`), for the node's Film.

    :meth:`at_least` answers from the images the child decoded for the
    working grid and the preview; anything else (the native pixels) is read
    again in a child, in full.
    """

    def __init__(self, images: dict, shape, loader: IsolatedLoader, path: Path, spacing, max_pixels) -> None:
        self.images = images
        self.shape = tuple(shape)
        self._loader, self._path, self._spacing, self._max_pixels = loader, path, spacing, max_pixels

    def native(self) -> np.ndarray:
        return self._loader(self._path, spacing=self._spacing, max_pixels=self._max_pixels, decode="full").pixels

    def at_least(self, shape, detail: str = "grid") -> np.ndarray:
        from medlung.io import reduce

        key = (tuple(reduce.shrink_shape(self.shape, shape)), detail)
        if key in self.images:
            return self.images[key]
        if detail == "picture" and (key[0], "grid") in self.images:
            return self.images[(key[0], "grid")]
        return reduce.area_average(self.native(), [key[0]])[0]  # not asked by the node's SEG path


def _decode_in_child(
    connection, path: str, spacing, max_pixels, allowance: int, pixels_file: str, reading: dict | None = None
) -> None:
    """The child's work: limit its memory, read the film, hand it back (never raises)."""
    import resource
    import warnings

    try:
        size = _virtual_size()
        limit = size + allowance
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError):
        pass
    try:
        from medlung.io import DEFAULT_MAX_PIXELS, load_film

        reading = dict(reading or {})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            film = load_film(path, spacing=spacing, max_pixels=max_pixels or DEFAULT_MAX_PIXELS, **reading)
        fields = {f.name: getattr(film, f.name) for f in dataclasses.fields(film) if f.name != "pixels"}
        if film.pixels_decoded or film.source is None:
            with open(pixels_file, "xb") as handle:
                np.save(handle, film.pixels, allow_pickle=False)
            answer: tuple = ("ok", (fields, None))
        else:  # a reduced decode: hand back what it decoded, for the shapes load_film decoded it for
            answer = ("ok", ({"film": fields, "shape": film.shape}, _reduced_images(film, reading)))
    except MemoryError as exc:
        answer = ("memory", f"{type(exc).__name__}")
    except MedlungError as exc:
        text = str(exc)
        answer = ("memory", text) if "MemoryError" in text else ("error", (type(exc).__name__, text))
    except BaseException as exc:  # the child reports everything; the node decides
        answer = ("error", ("MedlungError", f"{path}: unexpected {type(exc).__name__}: {str(exc)[:200]}"))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        connection.send((*answer, peak_kb))
    except Exception:
        connection.send(("error", ("MedlungError", f"{path}: the film's header cannot be handed over"), peak_kb))
    connection.close()


def _reduced_images(film, reading: dict) -> dict:
    """The images a reduced decode of ``film`` made for the working grid (and the preview), by request key."""
    from medlung.film import preview_shape, working_shape
    from medlung.io import reduce
    from medlung.plans import DEFAULT_WORKING_SPACING

    target, _ = working_shape(film.shape, film.spacing, reading.get("working_spacing") or DEFAULT_WORKING_SPACING)
    requests = [(target, "grid")]
    if reading.get("preview_side"):
        requests.append((preview_shape(film.shape, reading["preview_side"]), "picture"))
    return {
        (tuple(reduce.shrink_shape(film.shape, shape)), detail): np.ascontiguousarray(
            film.pixels_at_least(shape, detail)
        )
        for shape, detail in requests
    }


def _virtual_size() -> int:
    """This process's virtual memory size, bytes (``VmSize`` in /proc/self/status)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize")
