"""The receivers of the send matrix: real DICOM storage SCPs on 127.0.0.1 that show what they stored.

* Orthanc with its defaults, and Orthanc accepting Implicit VR Little Endian
  only (``AcceptedTransferSyntaxes``), started once per session each (the
  fixtures ``orthanc`` and :func:`orthanc_implicit`);
* dcmtk's ``storescp`` (``/usr/bin/storescp``: in the venv pynetdicom's own
  ``storescp`` comes first on the PATH) with its defaults (uncompressed,
  explicit VR preferred), ``+xi`` (implicit VR only) and ``+xd`` (deflate
  preferred);
* a pynetdicom storage SCP with its defaults (every storage SOP class,
  pynetdicom's default syntaxes, Implicit VR Little Endian first), in this
  process.

Each receiver gives the files it stored for a SOP Instance UID, one file per
arrival where it can tell (``storescp +uf`` and the pynetdicom SCP write every
arrival to a new file; Orthanc keeps one instance per UID).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from tests.pacs.orthanc import Orthanc, free_port, start_orthanc, stop_orthanc
from tests.writers.seg_support import require_tool, tools_required

#: dcmtk's storage SCP (not pynetdicom's ``storescp`` script of the same name).
STORESCP = Path("/usr/bin/storescp")
STORESCP_AE, PYNETDICOM_AE = "STORESCP", "PYNETSCP"
#: The receivers of the matrix, by name: how each is started.
RECEIVERS = ("orthanc", "orthanc-implicit", "storescp", "storescp+xi", "storescp+xd", "pynetdicom")
#: Orthanc configured to accept Implicit VR Little Endian only (Orthanc >= 1.9).
ORTHANC_IMPLICIT_ONLY = {"AcceptedTransferSyntaxes": ["1.2.840.10008.1.2"]}
START_TIMEOUT_S = 30


@dataclass
class Receiver:
    """A running storage SCP: where to send, and what it stored."""

    name: str
    ae_title: str
    port: int
    #: ``stored(uid, folder)``: the files it stored with this SOP Instance UID, copied into ``folder``.
    stored: Callable[[str, Path], list[Path]]
    #: Whether each arrival is a file of its own (so ``len(stored(...))`` counts arrivals).
    counts_arrivals: bool

    @property
    def destination(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"


def files_with_uid(folder: Path, uid: str) -> list[Path]:
    """The DICOM files in ``folder`` whose SOP Instance UID is ``uid``, oldest first."""
    found = []
    for path in sorted(folder.iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name)):
        if path.is_file():
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            except Exception:  # a file storescp is still writing
                continue
            if str(header.get("SOPInstanceUID", "")) == uid:
                found.append(path)
    return found


def orthanc_receiver(name: str, server: Orthanc) -> Receiver:
    def stored(uid: str, folder: Path) -> list[Path]:
        copies = []
        for index, instance in enumerate(server.instances_with_uid(uid)):
            copy = folder / f"{name}-{uid}-{index}.dcm"
            copy.write_bytes(server.get(f"/instances/{instance}/file"))
            copies.append(copy)
        return copies

    return Receiver(name, server.ae_title, server.dicom_port, stored, counts_arrivals=False)


@contextmanager
def storescp(folder: Path, *options: str, name: str = "storescp") -> Iterator[Receiver]:
    """dcmtk's storescp on a free port, writing every arrival to a new file in ``folder`` (``+uf``)."""
    if not STORESCP.is_file():
        reason = f"{STORESCP} not found (apt-get install dcmtk)"
        if tools_required():
            pytest.fail(f"CI requires it but {reason}")
        pytest.skip(reason)
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(folder.parent / f"{folder.name}.log", "wb")
    command = [str(STORESCP), *options, "-v", "+uf", "-aet", STORESCP_AE, "-od", str(folder), str(port)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process)

        def stored(uid: str, target: Path) -> list[Path]:
            return files_with_uid(folder, uid)

        yield Receiver(name, STORESCP_AE, port, stored, counts_arrivals=True)
    finally:
        process.terminate()  # the process this helper started, by its handle
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@contextmanager
def pynetdicom_scp(folder: Path) -> Iterator[Receiver]:
    """A pynetdicom storage SCP with its defaults: every storage SOP class, pynetdicom's default syntaxes."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    folder.mkdir(parents=True, exist_ok=True)
    arrivals = [0]
    lock = threading.Lock()

    def on_store(event):
        with lock:
            arrivals[0] += 1
            path = folder / f"{arrivals[0]:05d}.dcm"
        path.write_bytes(event.encoded_dataset())
        return 0x0000

    ae = AE(ae_title=PYNETDICOM_AE)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax)  # pynetdicom's default transfer syntaxes
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:

        def stored(uid: str, target: Path) -> list[Path]:
            return files_with_uid(folder, uid)

        yield Receiver("pynetdicom", PYNETDICOM_AE, port, stored, counts_arrivals=True)
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def orthanc_implicit(tmp_path_factory):
    """An Orthanc that accepts Implicit VR Little Endian only, for the whole session (started when first asked)."""
    server = start_orthanc(tmp_path_factory.mktemp("orthanc_implicit"), **ORTHANC_IMPLICIT_ONLY)
    try:
        yield server
    finally:
        stop_orthanc(server)


@contextmanager
def receiver(name: str, folder: Path, request) -> Iterator[Receiver]:
    """Start the receiver called ``name`` (one of :data:`RECEIVERS`); the Orthancs come from ``request``'s fixtures."""
    if name == "orthanc":
        yield orthanc_receiver(name, request.getfixturevalue("orthanc"))
    elif name == "orthanc-implicit":
        yield orthanc_receiver(name, request.getfixturevalue("orthanc_implicit"))
    elif name.startswith("storescp"):
        options = name[len("storescp") :]
        with storescp(folder / "stored", *([options] if options else []), name=name) as running:
            yield running
    elif name == "pynetdicom":
        with pynetdicom_scp(folder / "stored") as running:
            yield running
    else:
        raise ValueError(f"unknown receiver {name!r}; one of {', '.join(RECEIVERS)}")


def inflated(path, folder):
    """A deflated file as dcmtk inflates it (Explicit VR Little Endian): this dciodvfy does not read deflate."""
    target = folder / f"{path.name}.inflated.dcm"
    run = subprocess.run(
        [require_tool("dcmconv", "dcmtk"), "+te", str(path), str(target)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, f"dcmtk cannot read the deflated {path}: {run.stderr.strip()}"
    return target


def assert_same_values(ours, theirs, where: str = "") -> None:
    """Every element of ``ours`` is in ``theirs`` with the same value (Pixel Data is compared decoded)."""
    assert {e.tag for e in ours} == {e.tag for e in theirs}, where
    for element in ours:
        if element.tag == 0x7FE00010:
            continue
        other = theirs[element.tag]
        if element.VR == "SQ":
            assert len(element.value) == len(other.value), f"{where}{element.keyword}"
            for index, (a, b) in enumerate(zip(element.value, other.value)):
                assert_same_values(a, b, f"{where}{element.keyword}[{index}].")
        else:
            assert element.value == other.value, f"{where}{element.keyword or element.tag}"


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    import socket

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"storescp exited with {process.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"storescp did not listen on port {port} within {START_TIMEOUT_S} s")
