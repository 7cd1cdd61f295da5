"""Writers of results on the film's native grid: DICOM-SEG, PNG/NIfTI masks, overlays, reports."""
