"""Sending results to a PACS: DICOM C-STORE (pynetdicom) and DICOMweb STOW-RS (dicomweb-client).

Both need the ``[pacs]`` extra (``pip install medlung[pacs]``); they are
imported only when a send starts.
"""

from __future__ import annotations

from medlung.pacs.send import Destination, SendResult, parse_destination, send_cstore, stow_rs

__all__ = ["Destination", "SendResult", "parse_destination", "send_cstore", "stow_rs"]
