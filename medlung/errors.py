"""Errors raised by medlung.

Every message names the file (when there is one), says what is wrong and
what to do about it, on one line, so that a batch report or a command-line
error is readable without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class MedlungError(Exception):
    """Base class of the errors medlung expects and explains.

    Parameters
    ----------
    reason : str
        What is wrong, as a sentence fragment.
    path : str or Path, optional
        The file concerned; it leads the message.
    hint : str, optional
        What the user can do about it.
    """

    def __init__(self, reason: str, path: str | Path | None = None, hint: str | None = None):
        self.reason = reason
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.path}: {self.reason}" if self.path else self.reason
        if self.hint:
            text = f"{text.rstrip('.')}. {self.hint}"
        return " ".join(text.split())  # always one line


class UsageError(MedlungError):
    """What the command asks for cannot be done at all: an unknown device, a model that is not one, data that
    is not a training layout, an output that exists. The commands stop before any film is processed, write
    nothing and exit with status 2 (a film that fails inside a run is exit status 1)."""


class UnreadableFileError(MedlungError):
    """The file is not a readable DICOM or image file (missing, truncated, random bytes)."""


class UnsupportedImageError(MedlungError):
    """The file is readable but is not a single-frame greyscale radiograph
    (multi-frame, colour, SEG, SR, presentation state, CT, ...)."""


class PixelDecodeError(UnreadableFileError):
    """The DICOM header reads but the pixel data cannot be decoded."""


class InvalidSpacingError(MedlungError, ValueError):
    """A spacing given by the user is not two positive finite numbers in mm."""


class FilmWarning(UserWarning):
    """Something in a film's header was unusable and was skipped."""


class SpacingWarning(FilmWarning):
    """A spacing attribute was present but unusable and was skipped."""


class QualityWarning(FilmWarning):
    """A segmented film was flagged by the quality check: its result is probably meaningless (see its reasons)."""


class OutputExistsError(MedlungError, FileExistsError):
    """An output file already exists and overwriting was not asked for."""


class SegmentationWriteError(MedlungError):
    """A DICOM-SEG cannot be written for this film (not DICOM, or a source UID is missing)."""


class SegmentationMismatchError(MedlungError):
    """A DICOM-SEG does not fit the film it is read against (other image, other grid)."""


class InvalidDestinationError(MedlungError, ValueError):
    """A PACS destination is not of the form ``AE@HOST:PORT`` (or not a DICOMweb URL)."""


class EmptySegmentWarning(UserWarning):
    """A segment (a lung) has no pixels; it is still described in the DICOM-SEG."""


class MaskMismatchError(MedlungError, ValueError):
    """Two masks to be compared are not 2-D arrays on the same grid."""


class EvaluationError(MedlungError):
    """An evaluation cannot run, or one film cannot be scored (no prediction, unreadable mask)."""


class QualityCheckError(MedlungError):
    """A film failed the quality check and ``--qc-fail`` asked for that to be an error."""


class BundleError(MedlungError):
    """A MONAI bundle cannot be exported, read or run (missing run files, bad config override, no films)."""


class BundleExistsError(BundleError, FileExistsError):
    """The bundle folder already exists and overwriting was not asked for."""


class TlsConfigError(MedlungError, ValueError):
    """A DICOM TLS certificate, key or CA bundle is missing, unreadable, or they do not fit together."""


class CredentialsError(MedlungError, ValueError):
    """DICOMweb credentials are missing, unreadable, or given in a way that would expose them."""
