"""Small real films shipped with medlung for first runs and examples (see README.md here)."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent


def sample_paths() -> list[Path]:
    """Paths of the shipped sample films (DICOM and PNG), sorted by name."""
    return sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in (".dcm", ".png"))
