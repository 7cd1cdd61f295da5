"""The sender matrix: ``medlung serve`` receives what real modalities and routers send, in every syntax they use.

One node (``python -m medlung serve``, forwarding to the session's Orthanc)
is sent films by dcmtk's ``storescu`` (its default proposal, explicit VR
first, and ``-xi``, implicit VR only), dcmtk's ``dcmsend``, Orthanc
(``/modalities/{id}/store``) and pynetdicom, each with three films in three
transfer syntaxes. Each film must be received in the syntax in
:data:`SENDERS` (the one the sender and the node agreed on, from the node's
``received`` log line), segmented, and its SEG stored in Orthanc once.
What the node cannot decode is refused in the association (a context
rejected with "transfer syntaxes not supported"), not after the transfer.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    MPEG2MPML,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from medlung.pacs.syntaxes import encode_file, syntax_name
from medlung.services.node.spool import Spool
from tests import dicom_factory as factory
from tests.services.node.test_serve import (
    CLIENT_AE,
    NODE_AE,
    PER_FILM_S,
    Node,
    make_film,
    node_of,
    send_films,
    wait_until,
)
from tests.writers.seg_support import require_tool

EXPLICIT, IMPLICIT, DEFLATED = (
    str(ExplicitVRLittleEndian),
    str(ImplicitVRLittleEndian),
    str(DeflatedExplicitVRLittleEndian),
)
JPEG_LOSSLESS, JPEG_EXTENDED, JPEG_LS, J2K, RLE = (
    str(JPEGLosslessSV1),
    str(JPEGExtended12Bit),
    str(JPEGLSLossless),
    str(JPEG2000Lossless),
    str(RLELossless),
)
#: Per sender: (the syntax a film is stored in, the sender's options for it, the syntax the node received it in).
#: storescu proposes a compressed syntax only when told to (-xs JPEG lossless, -xr RLE) and does not decompress;
#: dcmsend decompresses lossless films itself when the node also accepts them uncompressed (it prefers that).
SENDERS = {
    "storescu": [(EXPLICIT, [], EXPLICIT), (JPEG_LOSSLESS, ["-xs"], JPEG_LOSSLESS), (RLE, ["-xr"], RLE)],
    "storescu-xi": [(IMPLICIT, ["-xi"], IMPLICIT), (EXPLICIT, ["-xi"], IMPLICIT), (DEFLATED, ["-xi"], IMPLICIT)],
    "dcmsend": [(JPEG_LS, [], EXPLICIT), (JPEG_EXTENDED, [], JPEG_EXTENDED), (DEFLATED, [], EXPLICIT)],
    "orthanc": [(J2K, [], J2K), (JPEG_LS, [], JPEG_LS), (RLE, [], RLE)],
    "pynetdicom": [(DEFLATED, [], DEFLATED), (J2K, [], J2K), (IMPLICIT, [], IMPLICIT)],
}
#: Films 256 x 256: the matrix tests syntaxes, not sizes.
SHAPE = (256, 256)


@pytest.fixture(scope="module")
def sender_node(orthanc, tmp_path_factory, shipped_bundle):
    """One node for the matrix, forwarding to Orthanc; Orthanc may send to it as modality ``medlung-senders``."""
    with node_of(orthanc, tmp_path_factory.mktemp("sender_node"), "medlung-senders") as running:
        yield running


def film_in(syntax: str, path, pixels, index: int, study: str):
    """A 12-bit film of the real Shenzhen film, stored in ``syntax`` (dcmtk's coders for JPEG lossless/extended)."""
    plain = make_film(path.with_suffix(".plain.dcm"), pixels, SHAPE, index, study=study)
    if syntax == EXPLICIT:
        plain.rename(path)
    elif syntax in (IMPLICIT, DEFLATED):
        path.write_bytes(encode_file(pydicom.dcmread(plain), syntax))
    elif syntax in (JPEG_LOSSLESS, JPEG_EXTENDED):
        option = "+e1" if syntax == JPEG_LOSSLESS else "+ee"
        run = subprocess.run(
            [require_tool("dcmcjpeg", "dcmtk"), option, str(plain), str(path)], capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
    else:
        factory.write(pydicom.dcmread(plain), path, syntax)
    assert str(pydicom.dcmread(path).file_meta.TransferSyntaxUID) == syntax
    return path


def send(sender: str, films: list, node: Node, orthanc) -> None:
    """Send ``films`` (path, sender options) to the node the way ``sender`` does."""
    port = str(node.port)
    paths = [path for path, _ in films]
    if sender.startswith("storescu"):
        for path, options in films:  # one association each: the options differ
            storescu = require_tool("storescu", "dcmtk")
            _run([storescu, *options, "-aet", CLIENT_AE, "-aec", NODE_AE, "127.0.0.1", port, str(path)])
    elif sender == "dcmsend":
        command = [require_tool("dcmsend", "dcmtk"), "-aet", CLIENT_AE, "-aec", NODE_AE, "127.0.0.1", port]
        _run([*command, *map(str, paths)])
    elif sender == "orthanc":
        instances = [orthanc.upload(path) for path in paths]
        answer = orthanc.post_json("/modalities/medlung-senders/store", {"Resources": instances, "Synchronous": True})
        assert answer.get("FailedInstancesCount", 0) == 0, answer
    elif sender == "pynetdicom":
        assert send_films(paths, node.port) == [0] * len(paths)
    else:
        raise ValueError(sender)


def _run(command) -> None:
    # dcmtk's tools are given the real binaries' paths (require_tool); pynetdicom's scripts would shadow storescu
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"{command[0]} failed: {run.stdout[-2000:]}{run.stderr[-2000:]}"


@pytest.mark.parametrize("sender", list(SENDERS))
def test_sender_films_in_three_syntaxes_come_back_as_segs(sender, sender_node, orthanc, shenzhen_pixels, tmp_path):
    study = generate_uid()
    pixels = np.asarray(shenzhen_pixels)
    cases = SENDERS[sender]
    films = {
        syntax: film_in(syntax, tmp_path / f"film{index}.dcm", pixels, index, study)
        for index, (syntax, _, _) in enumerate(cases)
    }
    keys = {syntax: Spool.key_for(pydicom.dcmread(path).SOPInstanceUID) for syntax, path in films.items()}
    send(sender, [(films[syntax], options) for syntax, options, _ in cases], sender_node, orthanc)

    def segs():
        found = [t for t in orthanc.study_instances(study) if t.get("Modality") == "SEG"]
        return found if len(found) >= len(films) else None

    found = wait_until(segs, PER_FILM_S * 3 * len(films), f"{len(films)} SEGs from {sender}'s films", sender_node)
    assert len({t["SOPInstanceUID"] for t in found}) == len(films) == len(found)
    events = sender_node.events()
    received = {
        e["key"]: e["transfer_syntax"] for e in events if e["event"] == "received" and e["key"] in keys.values()
    }
    seen = {syntax: received.get(keys[syntax]) for syntax in films}
    print(f"\nsender matrix: {sender}: " + "; ".join(f"{syntax_name(a)} -> {syntax_name(b)}" for a, b in seen.items()))
    assert seen == {syntax: expected for syntax, _, expected in cases}

    def sent_once():
        sent = [e["key"] for e in sender_node.events() if e["event"] == "sent" and e["key"] in keys.values()]
        return sorted(sent) == sorted(keys.values())

    wait_until(sent_once, 30, "one 'sent' line per film", sender_node)


def test_syntaxes_the_node_cannot_decode_are_refused_in_the_association(sender_node):
    from pynetdicom import AE

    ae = AE(ae_title=CLIENT_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(factory.CR, [str(MPEG2MPML)])  # video: not a film syntax
    ae.add_requested_context(factory.CR, ["1.2.840.10008.1.2.4.94"])  # JPIP Referenced: no pixels to decode
    ae.add_requested_context(factory.DX_PRESENTATION, [J2K])
    assoc = ae.associate("127.0.0.1", sender_node.port, ae_title=NODE_AE)
    assert assoc.is_established
    try:
        accepted = [(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts]
        rejected = [(str(c.abstract_syntax), c.result) for c in assoc.rejected_contexts]
    finally:
        assoc.release()
    assert accepted == [(factory.DX_PRESENTATION, J2K)]
    assert rejected == [(factory.CR, 0x04), (factory.CR, 0x04)]  # 0x04: transfer syntaxes not supported
