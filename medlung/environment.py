"""Every ``MEDLUNG_*`` environment variable medlung reads, in one place (listed in docs/environment.md).

No other module reads a ``MEDLUNG_*`` variable from ``os.environ``: they ask
here, by name (:func:`get`, :func:`flag`) or through the small accessors
below, so that the list in :data:`VARIABLES` and the docs page are the whole
truth (``tests/test_environment.py`` checks both). Variables are read when a
value is needed, never at import, so a test or a long-running node sees a
change.

Secrets (DICOMweb tokens and passwords, a TLS key's passphrase) are only
taken from the environment or from files it names, never from the command
line, where other users of the machine could read them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Variable:
    """One environment variable.

    Attributes
    ----------
    name : str
        ``MEDLUNG_...``.
    meaning : str
        What it does, one sentence (the docs page shows it).
    used_by : str
        The commands or parts that read it.
    secret : bool
        Holds a secret (never logged, never echoed).
    tests_only : bool
        Read by the test suite, not by medlung.
    """

    name: str
    meaning: str
    used_by: str
    secret: bool = False
    tests_only: bool = False


#: The variables, grouped as the docs page shows them.
VARIABLES: tuple[Variable, ...] = (
    Variable(
        "MEDLUNG_BUNDLE",
        "The model used when none is given (--bundle): a bundle folder, a training run or a .pt checkpoint.",
        "predict, evaluate, serve, the Python API",
    ),
    Variable(
        "MEDLUNG_DECODE_THREADS",
        "Threads used to decode one JPEG 2000 film (default: the CPUs the process may use, at most 8).",
        "every reader of JPEG 2000 DICOM",
    ),
    Variable(
        "MEDLUNG_J2K_DECODER",
        "'pydicom' decodes JPEG 2000 with pydicom's own plugins only, instead of imagecodecs first (for comparing).",
        "every reader of JPEG 2000 DICOM",
    ),
    Variable(
        "MEDLUNG_NO_PROGRESS",
        "Set (to anything but 0): no progress bars, one log line per epoch or film instead.",
        "train, evaluate, the bundle's train config",
    ),
    Variable(
        "MEDLUNG_TRACEBACK",
        "Set (to anything but 0): medlung's own errors in a bundle run show their traceback.",
        "python -m monai.bundle run",
    ),
    Variable(
        "MEDLUNG_STOW_TOKEN",
        "Bearer token for --stow (DICOMweb).",
        "predict --stow",
        secret=True,
    ),
    Variable(
        "MEDLUNG_STOW_TOKEN_FILE",
        "A file holding the bearer token for --stow (read before each send, so a refreshed token is used).",
        "predict --stow",
    ),
    Variable("MEDLUNG_STOW_USER", "User name for HTTP basic authentication with --stow.", "predict --stow"),
    Variable(
        "MEDLUNG_STOW_PASSWORD",
        "Password for HTTP basic authentication with --stow.",
        "predict --stow",
        secret=True,
    ),
    Variable(
        "MEDLUNG_STOW_PASSWORD_FILE",
        "A file holding the password for HTTP basic authentication with --stow.",
        "predict --stow",
    ),
    Variable(
        "MEDLUNG_TLS_KEY_PASSWORD",
        "Passphrase of an encrypted TLS private key (--tls-key).",
        "predict --send, serve",
        secret=True,
    ),
    Variable(
        "MEDLUNG_SHARED_DATA",
        "Folder of the real films the tests use (default: ../shared/data beside the checkout).",
        "tests",
        tests_only=True,
    ),
    Variable(
        "MEDLUNG_REQUIRE_SHARED",
        "1: tests that need the shared films fail instead of skipping when they are missing (CI sets it).",
        "tests",
        tests_only=True,
    ),
    Variable(
        "MEDLUNG_ARTIFACTS",
        "Folder where tests keep artefacts such as the OHIF viewer's screenshots.",
        "tests",
        tests_only=True,
    ),
    Variable(
        "MEDLUNG_CHROMIUM",
        "The Chromium the viewer tests drive (default: /usr/bin/chromium).",
        "tests",
        tests_only=True,
    ),
)
_BY_NAME = {variable.name: variable for variable in VARIABLES}


def variable(name: str) -> Variable:
    """The registered variable ``name``.

    Raises
    ------
    KeyError
        When ``name`` is not in :data:`VARIABLES` (add it there and to docs/environment.md).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name} is not a medlung environment variable; register it in medlung.environment") from None


def get(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of the registered variable ``name``; ``None`` when unset or empty.

    Parameters
    ----------
    name : str
        A name in :data:`VARIABLES`.
    environ : mapping, optional
        The environment to read (default: ``os.environ``).
    """
    variable(name)
    value = (os.environ if environ is None else environ).get(name)
    return value or None


def flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the registered variable ``name`` is set to something other than ``0``."""
    value = get(name, environ)
    return value is not None and value.strip() != "0"


def bundle_override() -> Path | None:
    """``$MEDLUNG_BUNDLE`` as a path, or None."""
    value = get("MEDLUNG_BUNDLE")
    return Path(value) if value else None


def decode_threads() -> int | None:
    """``$MEDLUNG_DECODE_THREADS`` when it is a positive whole number, else None (the caller's default)."""
    value = (get("MEDLUNG_DECODE_THREADS") or "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def j2k_decoder() -> str:
    """``"pydicom"`` or ``"imagecodecs"`` (the default): which JPEG 2000 decoder goes first."""
    return "pydicom" if (get("MEDLUNG_J2K_DECODER") or "").strip().lower() == "pydicom" else "imagecodecs"


def no_progress() -> bool:
    """``$MEDLUNG_NO_PROGRESS`` is set: log lines instead of progress bars."""
    return flag("MEDLUNG_NO_PROGRESS")


def traceback_wanted() -> bool:
    """``$MEDLUNG_TRACEBACK`` is set: show tracebacks for medlung's own errors in bundle runs."""
    return flag("MEDLUNG_TRACEBACK")


def markdown_table(tests_only: bool = False) -> str:
    """The variables as a Markdown table (docs/environment.md shows it; see docs/hooks.py)."""
    lines = ["| variable | what it does | read by |", "|---|---|---|"]
    for entry in VARIABLES:
        if entry.tests_only == tests_only:
            secret = " (a secret: never logged)" if entry.secret else ""
            lines.append(f"| `{entry.name}` | {entry.meaning}{secret} | {entry.used_by} |")
    return "\n".join(lines)
