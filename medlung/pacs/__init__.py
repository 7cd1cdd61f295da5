"""Sending results to a PACS: DICOM C-STORE (pynetdicom) and DICOMweb STOW-RS (dicomweb-client).

Both need the ``[pacs]`` extra (``pip install medlung[pacs]``); they are
imported only when a send starts.
"""

from __future__ import annotations

from medlung.pacs.send import (
    Destination,
    DicomwebCredentials,
    SendResult,
    credentials_from_environment,
    parse_destination,
    send_cstore,
    stow_rs,
)
from medlung.pacs.tls import TlsConfig

__all__ = [
    "Destination",
    "DicomwebCredentials",
    "SendResult",
    "TlsConfig",
    "credentials_from_environment",
    "parse_destination",
    "send_cstore",
    "stow_rs",
]
