"""The tables of the DICOM Conformance Statement (docs/conformance.md), generated from the code.

Each table sits in the page between ``<!-- conformance:NAME -->`` and
``<!-- /conformance:NAME -->``; this script renders them from what the code
negotiates (:mod:`medlung.pacs.syntaxes`, the node's limits, the SOP
classes medlung reads and creates), so the statement cannot drift from it.
``tests/docs/test_conformance.py`` fails when the page is out of date and
checks the tables against real associations.

    python scripts/conformance.py --check    # exit 1 when docs/conformance.md is out of date
    python scripts/conformance.py --write    # rewrite its tables
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "conformance.md"
BLOCK = re.compile(r"(<!-- conformance:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /conformance:(?P=name) -->)", re.S)
VERIFICATION = "1.2.840.10008.1.1"


def created_objects() -> list[tuple[str, str, str]]:
    """The objects medlung creates and sends: (what, SOP Class UID, the commands that make it).

    Add a row when medlung creates a new kind of object (the TID 1500 SR): it
    then gets its own presentation contexts like every other (see
    :func:`medlung.pacs.syntaxes.presentation_contexts`).
    """
    from pydicom.uid import ComprehensiveSRStorage, SegmentationStorage

    return [
        ("the lung DICOM-SEG", str(SegmentationStorage), "`predict --send/--stow`, `pull`, `serve`"),
        (
            "the lung measurements, DICOM SR (TID 1500)",
            str(ComprehensiveSRStorage),
            "`predict --send/--stow`, `pull`, `serve`",
        ),
    ]


def query_retrieve() -> list[tuple[str, str]]:
    """The Query/Retrieve SOP classes ``medlung pull`` uses as SCU (Study Root), and how."""
    from pynetdicom import sop_class

    return [
        (str(sop_class.StudyRootQueryRetrieveInformationModelFind), "C-FIND, study, series and image level"),  # type: ignore[attr-defined]
        (str(sop_class.StudyRootQueryRetrieveInformationModelGet), "C-GET, films received as Storage SCP"),  # type: ignore[attr-defined]
        (str(sop_class.StudyRootQueryRetrieveInformationModelMove), "C-MOVE to `--move-ae`"),  # type: ignore[attr-defined]
    ]


def _name(uid: str) -> str:
    from medlung.pacs.syntaxes import syntax_name

    return syntax_name(uid)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _syntaxes(uids) -> str:
    return "<br>".join(f"{_name(uid)} (`{uid}`)" for uid in uids)


def overview() -> str:
    """Network services: every SOP class, as user (SCU) and provider (SCP)."""
    from medlung.io.dicom import FILM_SOP_CLASSES

    rows = [[_name(VERIFICATION), f"`{VERIFICATION}`", "no", "yes (`serve`)"]]
    for uid in FILM_SOP_CLASSES:
        rows.append([_name(uid), f"`{uid}`", "yes (`predict --send-source`)", "yes (`serve`)"])
    for _, uid, commands in created_objects():
        rows.append([_name(uid), f"`{uid}`", f"yes ({commands})", "no"])
    for uid, how in query_retrieve():
        rows.append([_name(uid), f"`{uid}`", f"yes (`pull`, `predict --from`: {how})", "no"])
    return _table(["SOP class", "UID", "user of service (SCU)", "provider of service (SCP)"], rows)


def transfer_syntaxes() -> str:
    """Every transfer syntax medlung handles: received by the node, sent by medlung."""
    from pydicom.uid import ExplicitVRBigEndian

    from medlung.pacs.syntaxes import FILM_SYNTAXES, NATIVE_SYNTAXES, is_compressed

    rows = []
    for uid in FILM_SYNTAXES:
        if uid in NATIVE_SYNTAXES:
            sent = "yes: any object, re-encoded into it when the peer accepts nothing better"
        elif uid == str(ExplicitVRBigEndian):
            sent = "only a file stored so, as it is"
        else:
            assert is_compressed(uid), uid
            sent = "only a file stored so, as it is (decompressed when the peer does not accept it)"
        rows.append([_name(uid), f"`{uid}`", "yes", sent])
    return _table(["transfer syntax", "UID", "received (`serve`)", "sent (`predict`, `serve`)"], rows)


def _dataset(sop_class: str, syntax: str):
    from pydicom.dataset import Dataset, FileMetaDataset

    dataset = Dataset()
    dataset.SOPClassUID = sop_class
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax
    return dataset


def proposed_contexts() -> str:
    """The presentation contexts medlung proposes, per object (as :func:`send_cstore` proposes them)."""
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from medlung.pacs.syntaxes import presentation_contexts

    cases = [(f"{what}, as medlung writes it", uid, str(ExplicitVRLittleEndian)) for what, uid, _ in created_objects()]
    cases.append(
        (
            "the source film, stored compressed (e.g. JPEG 2000)",
            ComputedRadiographyImageStorage,
            "1.2.840.10008.1.2.4.90",
        )
    )
    cases.append(
        (
            "the source film, stored uncompressed (e.g. Implicit VR)",
            ComputedRadiographyImageStorage,
            str(ImplicitVRLittleEndian),
        )
    )
    rows = []
    for what, uid, syntax in cases:
        for number, (sop_class, syntaxes) in enumerate(presentation_contexts([_dataset(str(uid), syntax)]), 1):
            rows.append([what if number == 1 else "", _name(sop_class), _syntaxes(syntaxes), "SCU", "none"])
    return _table(
        ["object", "abstract syntax", "transfer syntaxes, in the order proposed", "role", "extended negotiation"], rows
    )


def accepted_contexts() -> str:
    """The presentation contexts the node accepts (each film SOP class in every syntax it decodes)."""
    from medlung.io.dicom import FILM_SOP_CLASSES
    from medlung.pacs.syntaxes import VERIFICATION_SYNTAXES

    rows = [
        [_name(uid), f"`{uid}`", "every syntax of [the table above](#transfer-syntaxes), in its order", "SCP", "none"]
        for uid in FILM_SOP_CLASSES
    ]
    rows.append([_name(VERIFICATION), f"`{VERIFICATION}`", _syntaxes(VERIFICATION_SYNTAXES), "SCP", "none"])
    return _table(["abstract syntax", "UID", "transfer syntaxes", "role", "extended negotiation"], rows)


def send_order() -> str:
    """In which of the accepted syntaxes each object is sent."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from medlung.pacs.syntaxes import send_order as order

    rows = []
    for label, syntax in (
        ("Explicit VR Little Endian (a SEG as medlung writes it)", str(ExplicitVRLittleEndian)),
        ("Implicit VR Little Endian (e.g. a film without File Meta)", str(ImplicitVRLittleEndian)),
        ("a compressed syntax X (e.g. JPEG 2000 Lossless)", "1.2.840.10008.1.2.4.90"),
        ("Explicit VR Big Endian (retired)", "1.2.840.10008.1.2.2"),
    ):
        names = [("X" if uid == "1.2.840.10008.1.2.4.90" else _name(uid)) for uid in order(syntax)]
        rows.append([label, ", then ".join(names)])
    return _table(["the file is stored in", "it is sent in the first the peer accepted of"], rows)


def association_limits() -> str:
    """The node's and the senders' association parameters, from their constants and defaults."""
    from medlung.pacs.send import send_cstore, stow_rs
    from medlung.services.node import ServeConfig
    from medlung.services.node.forwarding import SEND_BACKOFF_S, SEND_RETRIES
    from medlung.services.node.receiving import ACSE_TIMEOUT_S, ASSOCIATIONS, IDLE_TIMEOUT_S, MAX_PDU_BYTES

    fields = {f.name: f.default for f in ServeConfig.__dataclass_fields__.values()}
    cstore = inspect.signature(send_cstore).parameters
    stow = inspect.signature(stow_rs).parameters
    rows = [
        ["`serve`: associations served at once", str(ASSOCIATIONS)],
        ["`serve`: maximum PDU size received", f"{MAX_PDU_BYTES} bytes"],
        ["`serve`: association negotiation time-out (ARTIM)", f"{ACSE_TIMEOUT_S} s"],
        ["`serve`: silence allowed on an open association", f"{IDLE_TIMEOUT_S} s"],
        [
            "`serve`: films stored per association (`--max-films-per-association`)",
            str(fields["max_films_per_association"]),
        ],
        ["`serve`: largest film (`--max-film-mb`)", f"{fields['max_film_mb']:g} MB"],
        ["`serve`: disk left free (`--min-free-mb`)", f"{fields['min_free_mb']:g} MB"],
        ["`serve`: films waiting to be segmented (`--max-queue`)", str(fields["max_queue"])],
        ["`serve` forwarding: associations per attempt, pause", f"{SEND_RETRIES + 1}, {SEND_BACKOFF_S:g} s"],
        ["`serve` forwarding: longest wait between attempts (`--resend-interval`)", f"{fields['resend_interval']:g} s"],
        ["`serve` forwarding: time-out (`--send-timeout`)", f"{fields['send_timeout']:g} s"],
        [
            "`predict --send`: associations tried, first pause (doubled)",
            f"{cstore['retries'].default + 1}, {cstore['backoff'].default:g} s",
        ],
        ["`predict --send`: time-out for connecting, negotiating, each answer", f"{cstore['timeout'].default:g} s"],
        [
            "`predict --stow`: requests tried, first pause (doubled)",
            f"{stow['retries'].default + 1}, {stow['backoff'].default:g} s",
        ],
        ["asynchronous operations (both)", "none: one C-STORE at a time per association"],
    ]
    return _table(["parameter", "value"], rows)


def store_statuses() -> str:
    """What the node answers a C-STORE, and what a sender makes of the answers it gets."""
    from medlung.pacs import send
    from medlung.services.node import receiving

    rows = [
        [f"`0x{receiving.SUCCESS:04X}`", "Success", "the film is written (fsynced) in the node's queue"],
        [
            f"`0x{receiving.OUT_OF_RESOURCES:04X}`",
            "Refused: Out of Resources",
            "queue full (`--max-queue`), too little disk (`--min-free-mb`), stopping, or the film could not be queued",
        ],
        [f"`0x{receiving.FILM_TOO_LARGE:04X}`", "Refused: Out of Resources", "film larger than `--max-film-mb`"],
        [
            f"`0x{receiving.ASSOCIATION_FULL:04X}`",
            "Refused: Out of Resources",
            "more than `--max-films-per-association` films on one association",
        ],
    ]
    answered = _table(["status", "meaning", "when (`serve` as SCP)"], rows)
    stored = ", ".join(f"`0x{code:04X}`" for code in sorted(send._STORED_STATUSES))
    received = _table(
        ["status received (medlung as SCU)", "medlung's action"],
        [
            [stored, "stored (success and the warnings)"],
            [
                "`0xA7xx`, or no answer",
                "`serve`: kept in `outgoing`, tried again later; `predict`: an error row, the file kept",
            ],
            ["any other failure", "an error row / `failed/` with the status and the error comment; the file kept"],
            [
                f"no context accepted for the SOP class (`0x{send._NOT_ACCEPTED:04X}`, local)",
                "nothing sent; one line names the SOP class and the syntaxes proposed; the file kept",
            ],
        ],
    )
    return answered + "\n" + received


def stow_order() -> str:
    """The STOW-RS parts medlung posts for one file, in order."""
    from pydicom.uid import ExplicitVRLittleEndian

    from medlung.pacs.syntaxes import send_order as order

    rows = [
        [str(n), f"`application/dicom; transfer-syntax={uid}`", _name(uid)]
        for n, uid in enumerate(order(str(ExplicitVRLittleEndian)), 1)
    ]
    return _table(["request", "part's media type (a SEG as medlung writes it)", "the file encoded in"], rows)


BLOCKS: dict[str, Callable[[], str]] = {
    "overview": overview,
    "transfer-syntaxes": transfer_syntaxes,
    "proposed-contexts": proposed_contexts,
    "send-order": send_order,
    "accepted-contexts": accepted_contexts,
    "association-limits": association_limits,
    "store-statuses": store_statuses,
    "stow-order": stow_order,
}


def render(page: str) -> str:
    """``page`` with every generated table rendered from the code.

    Raises
    ------
    ValueError
        When the page names a table this script does not know, or lacks one it does.
    """
    found = {m.group("name") for m in BLOCK.finditer(page)}
    unknown, missing = found - set(BLOCKS), set(BLOCKS) - found
    if unknown or missing:
        raise ValueError(f"{PAGE}: unknown tables {sorted(unknown)}, missing tables {sorted(missing)}.")
    return BLOCK.sub(lambda m: m.group(1) + BLOCKS[m.group("name")]() + m.group(4), page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="exit 1 when the page is out of date")
    action.add_argument("--write", action="store_true", help="rewrite the page's tables")
    arguments = parser.parse_args(argv)
    page = PAGE.read_text(encoding="utf-8")
    fresh = render(page)
    if arguments.write:
        if fresh != page:
            PAGE.write_text(fresh, encoding="utf-8")
        print(f"{PAGE}: {len(BLOCKS)} tables written")
        return 0
    if fresh != page:
        print(f"{PAGE} is out of date: run python scripts/conformance.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
