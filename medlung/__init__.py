"""medlung: lung segmentation on chest radiographs, keeping the film's pixel spacing.

Public API::

    import medlung
    film = medlung.load_film("chest.dcm")      # pixels (rows, cols), spacing (row_mm, col_mm)

Heavy modules (torch, MONAI) are imported only when a name that needs them is used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from medlung.errors import MedlungError
from medlung.film import Film
from medlung.io import load_film

__all__ = ["Film", "MedlungError", "load_film", "__version__"]
