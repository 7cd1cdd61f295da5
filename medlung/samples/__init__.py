"""Small real films shipped with medlung for first runs and examples (see README.md here)."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
#: Manual masks of sample films: kept beside, not inside, SAMPLES_DIR, which holds films only (so that a folder
#: run over it, such as the bundle's default dataset, segments films and nothing else).
SAMPLE_MASKS_DIR = SAMPLES_DIR.parent / "sample_masks"


def sample_paths() -> list[Path]:
    """Paths of the shipped sample films (DICOM and PNG), sorted by name."""
    return sorted(p for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in (".dcm", ".png"))


def sample_mask(film: str | Path) -> Path:
    """The manual lung mask (0/255 PNG, both lungs) shipped for a sample film, e.g. ``CHNCXR_0001_0.png``.

    Raises
    ------
    FileNotFoundError
        When no mask is shipped for that film (only the Shenzhen sample has one).
    """
    path = SAMPLE_MASKS_DIR / f"{Path(film).stem}_lungs.png"
    if not path.is_file():
        raise FileNotFoundError(f"no sample mask for {Path(film).name}: only CHNCXR_0001_0.png has one")
    return path
