"""A real dcmtk ``dcmqrscp`` (DICOM image archive with Query/Retrieve) for the tests, on 127.0.0.1.

Its configuration file and storage area live in a temporary folder: one AE
title (:data:`AE_TITLE`) that accepts any peer, storing what it receives; the
C-MOVE destinations the tests need are listed in its host table.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pacs.orthanc import free_port, stop_process
from tests.writers.seg_support import require_tool

AE_TITLE = "DCMQR"
START_TIMEOUT_S = 30


@dataclass
class Dcmqrscp:
    """A running dcmqrscp: where to ask."""

    port: int
    folder: Path
    process: subprocess.Popen

    @property
    def destination(self) -> str:
        return f"{AE_TITLE}@127.0.0.1:{self.port}"

    def store(self, *paths: Path) -> None:
        """Store files in the archive with dcmtk's dcmsend (it proposes the files' own SOP classes)."""
        dcmsend = require_tool("dcmsend", "dcmtk")
        run = subprocess.run(
            [dcmsend, "-aec", AE_TITLE, "127.0.0.1", str(self.port), *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr


def start_dcmqrscp(folder: Path, move_destinations: dict[str, int]) -> Dcmqrscp:
    """Write ``folder/dcmqrscp.cfg`` and start the archive; ``move_destinations``: AE title -> port on 127.0.0.1."""
    exe = require_tool("dcmqrscp", "dcmtk")
    port = free_port()
    storage = folder / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    hosts = "\n".join(f"node{i} = ({ae}, 127.0.0.1, {p})" for i, (ae, p) in enumerate(move_destinations.items()))
    (folder / "dcmqrscp.cfg").write_text(
        f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
        f"HostTable BEGIN\n{hosts}\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
        f"AETable BEGIN\n{AE_TITLE} {storage} RW (100, 1024mb) ANY\nAETable END\n"
    )
    log = open(folder / "dcmqrscp.log", "ab")
    process = subprocess.Popen(
        [exe, "-c", str(folder / "dcmqrscp.cfg"), str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=folder
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dcmqrscp exited with {process.returncode}:\n{(folder / 'dcmqrscp.log').read_text()[-2000:]}")
        if _listening(port) and _echo(port):
            return Dcmqrscp(port, folder, process)
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"dcmqrscp did not listen on port {port} within {START_TIMEOUT_S} s")


def stop_dcmqrscp(server: Dcmqrscp) -> None:
    """Stop the dcmqrscp this module started (by its process, never by name)."""
    stop_process(server.process)
    shutil.rmtree(server.folder / "storage", ignore_errors=True)


def _listening(port: int) -> bool:
    """Whether a socket listens on ``port`` (read from /proc: a bare TCP probe is logged as a failed association)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _echo(port: int) -> bool:
    """A DICOM C-ECHO answered with success."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="PROBE")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and status.Status == 0
