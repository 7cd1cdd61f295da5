"""Fixtures of the node tests: a real Orthanc (see tests/pacs/orthanc.py)."""

from tests.pacs.orthanc import orthanc  # noqa: F401  (the fixture)
