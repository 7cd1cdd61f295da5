"""The serve queue's crash states, one by one, without Orthanc or a network (medlung.services.node.spool.Spool)."""

from __future__ import annotations

import os

import pytest

from medlung.services.node.spool import SEG_SUFFIX, SR_SUFFIX, STATES, Spool

FILM, SEG = b"film bytes", b"seg bytes"


def names(spool: Spool) -> dict:
    """Every file of the work folder, by state folder (temporary files included)."""
    return {state: sorted(p.name for p in spool.folder(state).iterdir()) for state in STATES}


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "work")


def test_the_normal_path_leaves_film_and_seg_in_done(spool):
    spool.receive("1.2.3", FILM)
    spool.seg("outgoing", "1.2.3").write_bytes(SEG)
    spool.segmented("1.2.3")
    spool.mark_sent("1.2.3")
    assert names(spool) == {"incoming": [], "outgoing": [], "done": ["1.2.3.dcm", "1.2.3_seg.dcm"], "failed": []}
    assert spool.film("done", "1.2.3").read_bytes() == FILM and spool.counts()["done"] == 1


def test_crash_while_receiving_drops_the_partial_file(spool):
    (spool.folder("incoming") / ".1.2.3.dcm.abc.part").write_bytes(b"fil")  # killed before the rename
    assert spool.recover() == ([], [])
    assert names(spool)["incoming"] == []


def test_received_film_without_seg_is_segmented_again(spool):
    spool.receive("1.2.3", FILM)
    assert spool.recover() == (["1.2.3"], [])


def test_seg_written_but_film_not_moved_is_sent_not_resegmented(spool):
    spool.receive("1.2.3", FILM)
    spool.seg("outgoing", "1.2.3").write_bytes(SEG)  # killed between the SEG and the film's move
    assert spool.recover() == ([], ["1.2.3"])
    assert names(spool)["outgoing"] == ["1.2.3.dcm", "1.2.3_seg.dcm"] and names(spool)["incoming"] == []


def test_seg_not_yet_delivered_is_sent(spool):
    spool.receive("1.2.3", FILM)
    spool.seg("outgoing", "1.2.3").write_bytes(SEG)
    spool.segmented("1.2.3")
    assert spool.recover() == ([], ["1.2.3"])


def test_stored_but_not_moved_is_finished_not_sent_again(spool):
    spool.receive("1.2.3", FILM)
    spool.seg("outgoing", "1.2.3").write_bytes(SEG)
    spool.segmented("1.2.3")
    spool.sent_marker("1.2.3").write_bytes(b"stored\n")  # killed after .sent, before the move to done
    assert spool.recover() == ([], [])
    assert names(spool)["done"] == ["1.2.3.dcm", "1.2.3_seg.dcm"] and names(spool)["outgoing"] == []


def test_film_in_outgoing_without_seg_goes_back_to_incoming(spool):
    spool.film("outgoing", "1.2.3").write_bytes(FILM)
    assert spool.recover() == (["1.2.3"], [])
    assert spool.film("incoming", "1.2.3").read_bytes() == FILM


def test_failed_film_keeps_its_seg_and_reason(spool):
    spool.receive("1.2.3", FILM)
    spool.seg("outgoing", "1.2.3").write_bytes(SEG)
    spool.segmented("1.2.3")
    reason = spool.fail("1.2.3", "destination refused:\n  0xA700 out of resources")
    assert reason.read_text() == "destination refused: 0xA700 out of resources\n"
    assert names(spool)["failed"] == ["1.2.3.dcm", "1.2.3.reason.txt", "1.2.3_seg.dcm"]
    assert spool.recover() == ([], []) and spool.counts() == {"incoming": 0, "outgoing": 0, "done": 0, "failed": 1}


def test_recovery_order_is_oldest_first(spool):
    for key, age in (("1.2.5", 30), ("1.2.4", 10), ("1.2.6", 20)):
        path = spool.receive(key, FILM)
        os.utime(path, ns=(age * 10**9, age * 10**9))
    assert spool.recover()[0] == ["1.2.4", "1.2.6", "1.2.5"]


@pytest.mark.parametrize(
    "uid, plain",
    [
        ("1.2.840.113619.2.1", True),
        ("1.2.3 ", True),
        ("../../etc/passwd", False),
        ("1." + "2" * 70, False),
        ("", False),
    ],
)
def test_keys_are_uids_or_hashes_never_paths(uid, plain):
    key = Spool.key_for(uid)
    assert (key == uid.strip()) is plain
    assert "/" not in key and not key.startswith(".") and len(key) <= 64
    assert Spool.key_for(uid) == key  # stable


@pytest.fixture
def node_spool(tmp_path):
    """The node's spool: a film's results are its SEG and its SR."""
    return Spool(tmp_path / "node", outputs=(SEG_SUFFIX, SR_SUFFIX))


def test_the_sr_travels_with_its_seg_to_done_and_to_failed(node_spool):
    for key in ("1.2.3", "1.2.4"):
        node_spool.receive(key, FILM)
        for result in node_spool.results("outgoing", key):
            result.write_bytes(SEG)
        node_spool.segmented(key)
    node_spool.mark_sent("1.2.3")
    node_spool.fail("1.2.4", "refused")
    assert names(node_spool)["done"] == ["1.2.3.dcm", "1.2.3_seg.dcm", "1.2.3_sr.dcm"]
    assert names(node_spool)["failed"] == ["1.2.4.dcm", "1.2.4.reason.txt", "1.2.4_seg.dcm", "1.2.4_sr.dcm"]


def test_a_seg_without_its_sr_is_segmented_again_not_sent(node_spool):
    node_spool.receive("1.2.3", FILM)
    node_spool.seg("outgoing", "1.2.3").write_bytes(SEG)  # killed between the SEG's and the SR's rename
    assert node_spool.recover() == (["1.2.3"], [])  # the worker writes the missing SR, then it is sent
    node_spool.results("outgoing", "1.2.3")[1].write_bytes(SEG)
    assert node_spool.recover() == ([], ["1.2.3"])
    assert names(node_spool)["outgoing"] == ["1.2.3.dcm", "1.2.3_seg.dcm", "1.2.3_sr.dcm"]


def test_the_seg_comes_first_in_a_spools_results(tmp_path):
    with pytest.raises(ValueError, match="must start with the SEG"):
        Spool(tmp_path, outputs=(SR_SUFFIX,))
