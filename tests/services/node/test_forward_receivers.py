"""``medlung serve --forward`` to every receiver of the matrix: each SEG arrives once, in a syntax it accepted.

For each receiver (tests/pacs/receivers.py) in turn, a node
(``python -m medlung serve``) forwarding to it is sent three films (explicit
VR, JPEG 2000, implicit VR); each SEG must be sent once (one ``sent`` line),
be stored once by the receiver, hold the element values and pixels of the
SEG the node wrote, and pass dciodvfy. A receiver that accepts Implicit VR
only used to get none of them (issue #27).
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, generate_uid
from pynetdicom import AE

from medlung.io.seg import read_dicom_seg
from medlung.pacs.syntaxes import encode_file, syntax_name
from medlung.services.node.spool import Spool
from tests import dicom_factory as factory
from tests.pacs.orthanc import free_port
from tests.pacs.receivers import RECEIVERS, assert_same_values, inflated, receiver
from tests.services.node.test_serve import PER_FILM_S, Node, make_film, send_films, sends_per_film, wait_until
from tests.writers.seg_support import dciodvfy

#: The films sent to each node: syntax of each (None: Explicit VR Little Endian, as made).
FILM_SYNTAXES = (None, str(JPEG2000Lossless), str(ImplicitVRLittleEndian))


@pytest.mark.slow  # a node started per receiver (about 10 s each on 2 cores); CI runs it
@pytest.mark.parametrize("name", RECEIVERS)
def test_serve_forwards_each_seg_once_to(name, request, shenzhen_pixels, shipped_bundle, tmp_path):
    pixels = np.asarray(shenzhen_pixels)
    study = generate_uid()
    films = []
    for index, syntax in enumerate(FILM_SYNTAXES):
        implicit = syntax == str(ImplicitVRLittleEndian)  # make_film compresses; the implicit one is re-encoded
        path = make_film(tmp_path / f"film{index}.dcm", pixels, (256, 256), index, study, None if implicit else syntax)
        if implicit:
            path.write_bytes(encode_file(pydicom.dcmread(path), syntax))
        films.append(path)
    keys = [Spool.key_for(pydicom.dcmread(path).SOPInstanceUID) for path in films]
    with receiver(name, tmp_path / name, request) as target:
        node = Node(tmp_path / "work", target.destination)
        try:
            node.start()
            assert send_films(films, node.port) == [0] * len(films)
            wait_until(
                lambda: all(sends_per_film(node.events()).get(k) for k in keys),
                PER_FILM_S * 3 * len(films),
                f"the {len(films)} SEGs sent to {name}",
                node,
            )
            assert {k: sends_per_film(node.events())[k] for k in keys} == dict.fromkeys(keys, 1)
            assert not [e for e in node.events() if e["event"] in ("failed", "delivery-delayed")], node.tail()
        finally:
            node.close()
        syntaxes = []
        for key, film in zip(keys, films):
            ours = node.workdir / "done" / f"{key}_seg.dcm"
            written = pydicom.dcmread(ours)
            stored = target.stored(str(written.SOPInstanceUID), tmp_path)
            assert len(stored) == 1, f"{name} has {len(stored)} copies of the SEG of {film.name}"
            theirs = pydicom.dcmread(stored[0])
            syntax = str(theirs.file_meta.TransferSyntaxUID)
            syntaxes.append(syntax_name(syntax))
            assert_same_values(written, theirs)
            assert np.array_equal(read_dicom_seg(stored[0])[0], read_dicom_seg(ours)[0])
            deflated = syntax == str(DeflatedExplicitVRLittleEndian)
            errors, _ = dciodvfy(inflated(stored[0], tmp_path) if deflated else stored[0])
            assert errors == [], errors
        print(
            f"\nserve --forward {name}: {len(films)} SEGs, each sent once, stored as {', '.join(sorted(set(syntaxes)))}"
        )


def test_a_receiver_that_accepts_no_syntax_for_the_seg_gets_one_line_and_the_seg_is_kept(
    shenzhen_pixels, shipped_bundle, tmp_path
):
    """The SEG goes to failed/ at once (not retried for ever), the reason names the SOP class and the syntaxes."""
    sink = AE(ae_title="FILMSONLY")
    sink.add_supported_context(factory.CR)  # films only: no presentation context for a SEG
    port = free_port()
    server = sink.start_server(("127.0.0.1", port), block=False)
    film = make_film(tmp_path / "film.dcm", np.asarray(shenzhen_pixels), (256, 256), 0, generate_uid())
    key = Spool.key_for(pydicom.dcmread(film).SOPInstanceUID)
    node = Node(tmp_path / "work", f"FILMSONLY@127.0.0.1:{port}")
    try:
        node.start()
        assert send_films([film], node.port) == [0]
        reason_file = node.workdir / "failed" / f"{key}.reason.txt"
        wait_until(reason_file.exists, PER_FILM_S * 3, "the reason file", node)
        reason = reason_file.read_text()
        assert reason.count("\n") == 1 and "does not accept Segmentation Storage" in reason
        assert "Explicit VR Little Endian, Implicit VR Little Endian, Deflated Explicit VR Little Endian" in reason
        assert (node.workdir / "failed" / f"{key}_seg.dcm").is_file()  # the SEG is kept
        failed = [e for e in node.events() if e["event"] == "failed" and e["key"] == key]
        assert len(failed) == 1 and failed[0]["stage"] == "send"
        assert not [e for e in node.events() if e["event"] == "delivery-delayed"]  # refused, so not retried
    finally:
        node.close()
        server.shutdown()
