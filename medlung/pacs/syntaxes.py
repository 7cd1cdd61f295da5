"""Transfer syntaxes: what medlung proposes when it sends, what it accepts when it receives, and re-encoding.

A DICOM peer agrees on a transfer syntax for each presentation context
(SOP class) when the association opens; every data set sent on that context
must then be encoded in it. medlung sends any object (the SEG, the SR, the
source film) the same way:

* :func:`presentation_contexts` proposes, per SOP class, one context for each
  compressed syntax the files are stored in (a PACS may accept each on its
  own), then one context with the syntaxes any data set can be re-encoded
  into (:data:`NATIVE_SYNTAXES`), the file's own first;
* :func:`choose_syntax` picks, among the syntaxes the peer accepted for the
  SOP class, the first in medlung's order (:func:`send_order`): the file's
  own syntax, then Explicit VR, Implicit VR, Deflated Explicit VR Little Endian;
* :func:`reencode` / :func:`encode_file` write the data set in that syntax: a
  real re-encoding (each element written with or without its VR, the
  data set deflated), decompressed first when the peer takes only native
  syntaxes. The file on disk is never changed.

Receiving (``medlung serve``), :func:`receivable_syntaxes` lists every
syntax whose pixel data medlung can decode (:data:`FILM_SYNTAXES`, those whose
decoder is installed); the others are refused in the association.

The DICOM Conformance Statement (``docs/conformance.md``) is generated from
these tables (``scripts/conformance.py``).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterable, Sequence

from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    SegmentationStorage,
)

__all__ = [
    "FILM_SYNTAXES",
    "NATIVE_SYNTAXES",
    "VERIFICATION_SYNTAXES",
    "choose_syntax",
    "encode_file",
    "presentation_contexts",
    "receivable_syntaxes",
    "reencode",
    "send_order",
    "syntax_name",
]

#: The syntaxes every data set can be re-encoded into, in the order medlung prefers them after the file's own:
#: Explicit VR Little Endian (what medlung writes), Implicit VR Little Endian (the DICOM default every node
#: accepts), Deflated Explicit VR Little Endian (smaller, costs CPU on both sides).
NATIVE_SYNTAXES: tuple[str, ...] = (
    str(ExplicitVRLittleEndian),
    str(ImplicitVRLittleEndian),
    str(DeflatedExplicitVRLittleEndian),
)

#: The syntaxes ``medlung serve`` accepts for a film, in the order it prefers them (an acceptor picks, for each
#: proposed context, the first of its own list that the caller proposed): uncompressed and deflated first (no
#: decoding), then the lossless compressions, then the lossy ones. Explicit VR Big Endian (retired) is read too.
FILM_SYNTAXES: tuple[str, ...] = (
    *NATIVE_SYNTAXES,
    str(ExplicitVRBigEndian),
    str(RLELossless),
    str(JPEGLosslessSV1),
    str(JPEGLossless),
    str(JPEGLSLossless),
    str(JPEG2000Lossless),
    str(HTJ2KLossless),
    str(HTJ2KLosslessRPCL),
    str(JPEGLSNearLossless),
    str(JPEG2000),
    str(HTJ2K),
    str(JPEGBaseline8Bit),
    str(JPEGExtended12Bit),
)

#: Verification (C-ECHO) carries no data set: the two syntaxes every caller proposes.
VERIFICATION_SYNTAXES: tuple[str, ...] = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))

_ENCAPSULATED_FREE = frozenset((*NATIVE_SYNTAXES, str(ExplicitVRBigEndian)))


def syntax_name(uid: str) -> str:
    """The name of a Transfer Syntax UID (``"Implicit VR Little Endian"``), or the UID when pydicom has none."""
    name = UID(str(uid)).name
    return name if name and name != str(uid) else str(uid)


def is_compressed(syntax: str) -> bool:
    """Whether pixel data in ``syntax`` are encapsulated (compressed), so re-encoding needs decoding."""
    return str(syntax) not in _ENCAPSULATED_FREE


def send_order(own: str) -> list[str]:
    """The syntaxes a data set stored in ``own`` can be sent in, best first.

    Its own syntax first (no work, exactly the bytes written), then
    :data:`NATIVE_SYNTAXES`. A retired big-endian file is sent only as it
    is: pydicom does not byte-swap its pixel data, so its re-encoding would
    not be the same image.

    Parameters
    ----------
    own : str
        The Transfer Syntax UID the data set is stored in.

    Returns
    -------
    list of str
        Transfer Syntax UIDs.
    """
    own = str(own)
    if own == str(ExplicitVRBigEndian):
        return [own]
    return [own, *(s for s in NATIVE_SYNTAXES if s != own)]


def presentation_contexts(datasets: Iterable) -> list[tuple[str, list[str]]]:
    """The presentation contexts to propose for sending ``datasets``: ``(SOP Class UID, [Transfer Syntax UIDs])``.

    Per SOP class, in the order the classes first appear: one context for
    each compressed syntax the data sets are stored in (so a PACS can accept
    or refuse each on its own), then one context with the native syntaxes
    (the first data set's own first when it is native). A SOP class whose
    data sets are all big endian gets only that syntax.

    Parameters
    ----------
    datasets : iterable of pydicom.Dataset
        Data sets with File Meta (their ``TransferSyntaxUID``).

    Returns
    -------
    list of (str, list of str)
    """
    stored: dict[str, list[str]] = {}
    for dataset in datasets:
        syntaxes = stored.setdefault(str(dataset.SOPClassUID), [])
        syntax = str(dataset.file_meta.TransferSyntaxUID)
        if syntax not in syntaxes:
            syntaxes.append(syntax)
    contexts = []
    for sop_class, syntaxes in stored.items():
        for syntax in syntaxes:
            if is_compressed(syntax) or syntax == str(ExplicitVRBigEndian):
                contexts.append((sop_class, [syntax]))
        native = [s for s in syntaxes if s in NATIVE_SYNTAXES]
        if native or any(is_compressed(s) for s in syntaxes):
            first = native[0] if native else NATIVE_SYNTAXES[0]
            contexts.append((sop_class, send_order(first)))
    return contexts


def choose_syntax(own: str, accepted: Iterable[str]) -> str | None:
    """The syntax to send a data set stored in ``own`` in: the first of :func:`send_order` the peer accepted.

    Parameters
    ----------
    own : str
        The data set's Transfer Syntax UID.
    accepted : iterable of str
        The Transfer Syntax UIDs of the contexts the peer accepted for its SOP class.

    Returns
    -------
    str or None
        None when the peer accepted none of them.
    """
    accepted = {str(s) for s in accepted}
    return next((syntax for syntax in send_order(own) if syntax in accepted), None)


def encode_file(dataset, syntax: str) -> bytes:
    """The data set as a DICOM file (Part 10 bytes) encoded in ``syntax``.

    Parameters
    ----------
    dataset : pydicom.Dataset
        With File Meta; not changed.
    syntax : str
        Its own Transfer Syntax UID or one of :data:`NATIVE_SYNTAXES`.

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        When ``syntax`` is neither (see :func:`send_order`).
    Exception
        What the pixel decoder raises when a compressed data set cannot be decoded.
    """
    import pydicom

    own, syntax = str(dataset.file_meta.TransferSyntaxUID), str(syntax)
    if syntax not in send_order(own):
        raise ValueError(
            f"a data set stored in {syntax_name(own)} can be sent as {', '.join(map(syntax_name, send_order(own)))}; "
            f"not as {syntax_name(syntax)}."
        )
    if syntax != own and is_compressed(own):
        dataset = _decompressed(dataset)
    target = copy.copy(dataset)  # a shallow copy: the elements are not changed by writing them
    target.file_meta = copy.deepcopy(dataset.file_meta)
    target.file_meta.TransferSyntaxUID = UID(syntax)
    for keyword, value in (
        ("MediaStorageSOPClassUID", dataset.SOPClassUID),
        ("MediaStorageSOPInstanceUID", dataset.SOPInstanceUID),
    ):
        if keyword not in target.file_meta:  # a file read without File Meta (ACR-NEMA style)
            setattr(target.file_meta, keyword, value)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, target, enforce_file_format=True)  # writes each element in the target encoding
    return buffer.getvalue()


def reencode(dataset, syntax: str):
    """A copy of the data set encoded in ``syntax``, as read back from those bytes (see :func:`encode_file`).

    Its encoding (implicit or explicit VR) is that of ``syntax``, which is
    what a DICOM toolkit (pynetdicom) checks before sending it on a context
    of that syntax. The data set itself is returned when ``syntax`` is its own.
    """
    import pydicom

    if str(syntax) == str(dataset.file_meta.TransferSyntaxUID):
        return dataset
    return pydicom.dcmread(io.BytesIO(encode_file(dataset, syntax)))


def receivable_syntaxes(candidates: Sequence[str] = FILM_SYNTAXES) -> list[str]:
    """The syntaxes of ``candidates`` whose pixel data pydicom can decode here (its decoder plugin is installed).

    Parameters
    ----------
    candidates : sequence of str
        Transfer Syntax UIDs (default :data:`FILM_SYNTAXES`), in order.

    Returns
    -------
    list of str
        The decodable ones, in the same order.
    """
    from pydicom.pixels.decoders.base import get_decoder

    from medlung.io import j2k

    found = []
    for syntax in candidates:
        try:
            available = get_decoder(UID(syntax)).is_available or j2k.is_available(syntax)
        except NotImplementedError:  # no decoder at all in this pydicom
            available = False
        if available:
            found.append(str(syntax))
    return found


def _decompressed(dataset):
    """An Explicit VR Little Endian copy of a compressed data set (1-bit SEG frames through highdicom)."""
    import numpy as np
    from pydicom.pixels import pack_bits

    dataset = copy.deepcopy(dataset)
    if dataset.SOPClassUID == SegmentationStorage and int(dataset.BitsAllocated) == 1:
        frames = _seg_frames(dataset)
        packed = pack_bits(np.stack(frames).ravel().astype(np.uint8), pad=True)
        del dataset.PixelData  # a fresh element: the old one is flagged as encapsulated
        dataset.add_new(0x7FE00010, "OB", packed)
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        return dataset
    dataset.decompress(generate_instance_uid=False)  # the same instance in another syntax keeps its UID
    return dataset


def _seg_frames(dataset) -> list:
    """The frames of a compressed 1-bit SEG, decoded with highdicom's frame decoder."""
    from highdicom.frame import decode_frame
    from pydicom.encaps import generate_frames

    frames = []
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    for raw in generate_frames(dataset.PixelData, number_of_frames=count):
        frames.append(
            decode_frame(
                raw,
                transfer_syntax_uid=str(dataset.file_meta.TransferSyntaxUID),
                rows=int(dataset.Rows),
                columns=int(dataset.Columns),
                samples_per_pixel=1,
                bits_allocated=1,
                bits_stored=1,
                photometric_interpretation=str(dataset.PhotometricInterpretation),
                pixel_representation=0,
            )
        )
    return frames
