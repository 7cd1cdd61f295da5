"""Output file names: one safe, unique name stem per input film (``<stem>_lungs.png`` ...).

Used by the batch pipeline to name what it writes and by evaluation to find
those files again, so both agree on the names.
"""

from __future__ import annotations

from pathlib import Path


def output_stems(paths: list[Path]) -> dict[Path, str]:
    """Output name stem of each input; clashing stems get their parent folder's name, then a number."""
    namer = OutputNamer()
    return {path: namer(path) for path in paths}


class OutputNamer:
    """Output name stems given one input at a time, in input order (what :func:`output_stems` gives a list).

    Keeps only the stems used so far, so that a stream of inputs (a manifest)
    is named without holding its paths.
    """

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, path: Path) -> str:
        stem = output_stem(path)
        if stem in self.used and path.parent.name:
            stem = f"{safe_name(path.parent.name)}_{stem}"
        base, number = stem, 2
        while stem in self.used:
            stem, number = f"{base}_{number}", number + 1
        self.used.add(stem)
        return stem


def output_stem(path: Path) -> str:
    """The input's name without its extension, made safe (see :func:`safe_name`)."""
    name = path.name
    if name.lower().endswith(".nii.gz"):
        name = name[: -len(".gz")]
    return safe_name(name[: name.rfind(".")] if "." in name.lstrip(".") else name)


def safe_name(text: str) -> str:
    """Letters, digits, ``-``, ``_`` and ``.`` only, no leading dot, at most 120 characters: never a path."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in text).lstrip(".")
    return (safe or "film")[:120]
