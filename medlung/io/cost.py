"""What a film will cost in memory, from its header alone: for a batch's or a node's memory budget.

:func:`declared_cost` reads the header (and, for compressed DICOM, the
frame's own header: the size a decoder will allocate is the codestream's, not
Rows x Columns) and checks it like the reader does: a file the reader would
refuse raises the same one-line error here, before anything is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Bytes per native pixel that segmenting and writing hold besides the decode: the lung margin resized to the
#: native grid (float32), the mask and the label maps (uint8, stored and displayed) and the outputs' encodings.
NATIVE_GRID_BYTES_PER_PIXEL = 10


@dataclass(frozen=True)
class FilmCost:
    """Declared memory cost of one film, bytes.

    Attributes
    ----------
    rows, cols : int
        Native size.
    decode_bytes : int
        What decoding allocates in the asked mode: the stored values at full size and the float32 film
        (``decode="full"``), or what the reduced decode holds (the stored values at full size for syntaxes
        without reduced decoding; a resolution level's for JPEG 2000 / DCT JPEG).
    native_grid_bytes : int
        Masks and label maps on the native grid (:data:`NATIVE_GRID_BYTES_PER_PIXEL` a pixel).
    """

    rows: int
    cols: int
    decode_bytes: int
    native_grid_bytes: int

    @property
    def total_bytes(self) -> int:
        """What one film holds at its peak (decode and native grid), bytes; the model and torch not included."""
        return self.decode_bytes + self.native_grid_bytes


def declared_cost(path: str | Path, decode: str = "reduced", max_pixels: int | None = None) -> FilmCost:
    """The memory one film will need, from its header (nothing is decoded).

    Parameters
    ----------
    path : str or Path
        The film.
    decode : str
        ``"reduced"`` or ``"full"`` (see :func:`medlung.load_film`).
    max_pixels : int, optional
        The pixel limit (default :data:`medlung.io.DEFAULT_MAX_PIXELS`); beyond it the film is refused.

    Raises
    ------
    medlung.errors.MedlungError
        What :func:`medlung.load_film` would raise for a header it refuses (size, codestream, file type).
    """
    from medlung.defaults import DEFAULT_MAX_PIXELS
    from medlung.io import load_film

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    film = load_film(path, max_pixels=limit, decode="header")
    rows, cols = film.shape
    source = film.source
    per_sample = int(film.facts.get("bits_allocated") or 8) // 8 or 1
    stored = rows * cols * per_sample
    if source is not None and hasattr(source, "decode_bytes"):
        stored = int(source.decode_bytes)
    if decode == "full":
        decoded = stored + rows * cols * 4
    else:
        # a codec that decodes a resolution level decodes at most level 1 (an overlay's); the others decode it all
        direct = getattr(source, "direct_level", None)
        decoded = stored // 4 if direct and direct((rows // 2, cols // 2)) else stored
    return FilmCost(rows, cols, decoded, rows * cols * NATIVE_GRID_BYTES_PER_PIXEL)
