"""Fixtures of the PACS tests: a real Orthanc (see tests/pacs/orthanc.py), and one accepting Implicit VR only."""

from tests.pacs.orthanc import orthanc  # noqa: F401  (the fixture)
from tests.pacs.receivers import orthanc_implicit  # noqa: F401  (the fixture)
