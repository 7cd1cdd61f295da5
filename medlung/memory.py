"""The memory budget of a batch and of the node: ``--max-memory``, and what one film costs to decode.

A film's cost is known before its pixels are decoded, from its header: the
*declared decode cost* (:func:`declared_decode_cost`) is the peak memory the
reader and the segmenter need for a film of that size, measured on medlung's
own pipeline. A batch (``medlung predict --workers N``) and the node
(``medlung serve``) hold each film's cost in a :class:`MemoryBudget` while it
is in flight, so N workers never hold more than the budget together: big
films wait for memory, small ones run side by side, and a film whose cost
alone is above the budget is refused with a one-line error before a byte of
it is decoded.

The default budget comes from the machine: half of the memory this process
may use (the smaller of the physical memory and a cgroup limit).
"""

from __future__ import annotations

import math
import os
import re
import threading
from pathlib import Path

from medlung.errors import MedlungError

#: Fraction of the machine's memory a batch or a node takes by default.
DEFAULT_FRACTION = 0.5
#: Smallest budget accepted, bytes: the model and the libraries alone take about this much.
MIN_BUDGET_BYTES = 512 * 2**20
#: Memory of the process before any film: Python, torch, MONAI and the shipped model, bytes (peak RSS of a predict
#: run on a 64x64 film: 589 MB; benchmarks/memory_budget.py).
BASE_BYTES = 600 * 2**20
#: Peak bytes per pixel of one film through read, segment and write, beyond its stored pixels: the float32 film, a
#: float64 copy while a LUT or window is applied, the label maps, the overlay (measured 15-44 B/px beyond the base
#: on 1024x1024 to 4020x4892 films, benchmarks/memory_budget.py; with PER_FILM_BYTES it covers every one).
BYTES_PER_PIXEL = 24
#: Bytes every film takes whatever its size: the network's tensors on the working grid (2 mm), the model's buffers.
PER_FILM_BYTES = 128 * 2**20
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class MemoryBudgetError(MedlungError):
    """A film needs more memory than the budget allows."""


def machine_memory() -> int:
    """Bytes this process may use: the physical memory, or the cgroup's limit when smaller."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


def default_budget() -> int:
    """The default ``--max-memory``: :data:`DEFAULT_FRACTION` of :func:`machine_memory`, at least the minimum."""
    return max(MIN_BUDGET_BYTES, int(machine_memory() * DEFAULT_FRACTION))


def parse_memory(text: str | int | float) -> int:
    """Bytes from ``"4G"``, ``"1500M"``, ``"2.5GB"``, ``"800MiB"`` or a number of bytes.

    Raises
    ------
    MedlungError
        Naming the text and the forms accepted, or when it is below :data:`MIN_BUDGET_BYTES`.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(text).upper())
        if not match:
            raise MedlungError(
                f"--max-memory {text!r} is not an amount of memory", hint="Write e.g. 4G, 1500M or 2.5GB."
            )
        value = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(value) or value < MIN_BUDGET_BYTES:
        raise MedlungError(
            f"--max-memory {text!r} is less than the {MIN_BUDGET_BYTES // 2**20} MB medlung needs before any film",
            hint="Give at least 512M.",
        )
    return int(value)


def format_bytes(count: float) -> str:
    """``1.5 GB``, ``640 MB``: memory for people (binary units, as ``--max-memory`` reads them)."""
    if count >= 2**30:
        return f"{count / 2**30:.1f} GB"
    return f"{count / 2**20:.0f} MB"


def declared_decode_cost(rows: int, cols: int, bits_allocated: int = 16, samples: int = 1) -> int:
    """Peak bytes one film of this declared size costs through read, segment and write (its header is enough).

    Parameters
    ----------
    rows, cols : int
        Rows and Columns the header declares.
    bits_allocated : int
        Bits of one stored sample (8, 16, 32).
    samples : int
        Samples per pixel (3 for a colour PNG read as grey).
    """
    pixels = max(0, int(rows)) * max(0, int(cols))
    stored = pixels * max(1, int(samples)) * max(1, math.ceil(int(bits_allocated) / 8))
    return stored + pixels * BYTES_PER_PIXEL + PER_FILM_BYTES


class MemoryBudget:
    """Bytes shared by the films in flight: each holds its cost from before it is decoded until it is written.

    Parameters
    ----------
    total : int
        The budget, bytes (``--max-memory``).
    reserved : int
        Bytes the process needs before any film (:data:`BASE_BYTES`).

    Examples
    --------
    >>> budget = MemoryBudget(2 * 2**30)
    >>> with budget.hold(300 * 2**20, "film.dcm"):
    ...     pass
    """

    def __init__(self, total: int, reserved: int = BASE_BYTES) -> None:
        self.total = int(total)
        self.available = max(MIN_BUDGET_BYTES // 2, self.total - int(reserved))
        self._free = self.available
        self._condition = threading.Condition()

    def check(self, cost: int, where: str | Path | None = None) -> None:
        """Raise :class:`MemoryBudgetError` when ``cost`` alone is more than the budget can ever give."""
        if cost > self.available:
            raise MemoryBudgetError(
                f"needs about {format_bytes(cost)} to decode and segment (its header's size), more than "
                f"the {format_bytes(self.available)} --max-memory {format_bytes(self.total)} leaves for films",
                where,
                "Raise --max-memory if the film is real, or lower --max-pixels to refuse such films sooner.",
            )

    def acquire(self, cost: int, where: str | Path | None = None) -> int:
        """Wait until ``cost`` bytes are free and take them; returns what was taken (give it to :meth:`release`)."""
        cost = max(0, int(cost))
        self.check(cost, where)
        with self._condition:
            while self._free < cost:
                self._condition.wait()
            self._free -= cost
        return cost

    def release(self, cost: int) -> None:
        with self._condition:
            self._free = min(self.available, self._free + cost)
            self._condition.notify_all()

    def hold(self, cost: int, where: str | Path | None = None):
        """Context manager: :meth:`acquire` on entry, :meth:`release` on exit."""
        from contextlib import contextmanager

        @contextmanager
        def holding():
            taken = self.acquire(cost, where)
            try:
                yield taken
            finally:
                self.release(taken)

        return holding()

    def films_at_once(self, cost: int) -> int:
        """How many films of ``cost`` bytes fit in the budget together (at least 1)."""
        return max(1, self.available // max(1, int(cost)))
