"""medlung's version: one place, read by the package, its metadata (setup.cfg), bundles and DICOM outputs."""

__version__ = "0.1.0"
