"""A real Orthanc PACS (Debian ``orthanc`` + ``orthanc-dicomweb``) for the tests, on 127.0.0.1.

The server gets a JSON configuration in a temporary folder: free DICOM and
HTTP ports, its own storage, the DICOMweb plugin, no remote HTTP access and
no authentication (loopback only). It is started once per test session and
stopped at the end.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.writers.seg_support import tools_required

#: Where Debian's orthanc-dicomweb puts the plugin.
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
AE_TITLE = "ORTHANC"
START_TIMEOUT_S = 60


@dataclass
class Orthanc:
    """A running Orthanc: where to send, where to ask."""

    ae_title: str
    dicom_port: int
    http_port: int
    folder: Path
    process: subprocess.Popen
    #: (user, password) the helper's own REST calls use when the server has ``AuthenticationEnabled``.
    credentials: tuple[str, str] | None = None

    @property
    def destination(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.dicom_port}"

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.rest}/dicom-web"

    def _open(self, request, timeout: float = 30):
        """``urlopen`` with the helper's credentials, when the server wants some."""
        if not isinstance(request, urllib.request.Request):
            request = urllib.request.Request(request)
        if self.credentials is not None:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        return urllib.request.urlopen(request, timeout=timeout)

    def get(self, route: str) -> bytes:
        with self._open(f"{self.rest}{route}") as answer:
            return answer.read()

    def get_json(self, route: str):
        return json.loads(self.get(route))

    def post_json(self, route: str, body):
        request = urllib.request.Request(
            f"{self.rest}{route}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with self._open(request) as answer:
            return json.loads(answer.read())

    def put_json(self, route: str, body):
        request = urllib.request.Request(
            f"{self.rest}{route}",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with self._open(request) as answer:
            return answer.read()

    def upload(self, path: Path) -> str:
        """Store a DICOM file through the REST API; its Orthanc instance id."""
        request = urllib.request.Request(
            f"{self.rest}/instances", data=Path(path).read_bytes(), headers={"Content-Type": "application/dicom"}
        )
        with self._open(request, timeout=60) as answer:
            return json.loads(answer.read())["ID"]

    def add_modality(self, name: str, ae_title: str, port: int, host: str = "127.0.0.1", **options) -> None:
        """Declare a DICOM node (``DicomModalities``) at run time, so ``/modalities/{name}/store`` reaches it.

        ``options`` are further modality settings, e.g. ``UseDicomTls=True``.
        """
        self.put_json(f"/modalities/{name}", {"AET": ae_title, "Host": host, "Port": port, **options})

    def study_instances(self, study_instance_uid: str) -> list[dict]:
        """The stored instances of a study (by DICOM UID): their simplified tags; [] when the study is unknown."""
        request = urllib.request.Request(f"{self.rest}/tools/lookup", data=study_instance_uid.encode())
        with self._open(request) as answer:
            studies = [item["ID"] for item in json.loads(answer.read()) if item["Type"] == "Study"]
        tags = []
        for study in studies:
            for instance in self.get_json(f"/studies/{study}/instances"):
                tags.append(self.get_json(f"/instances/{instance['ID']}/simplified-tags"))
        return tags

    def instances_with_uid(self, sop_instance_uid: str) -> list[str]:
        """Orthanc ids of the stored instances with this SOP Instance UID."""
        request = urllib.request.Request(f"{self.rest}/tools/lookup", data=sop_instance_uid.encode())
        with self._open(request) as answer:
            return [item["ID"] for item in json.loads(answer.read()) if item["Type"] == "Instance"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dicomweb_plugin() -> Path | None:
    for folder in PLUGIN_DIRS:
        for candidate in sorted(folder.glob("libOrthancDicomWeb.so*")):
            return candidate
    return None


def _missing(reason: str):
    if tools_required():
        pytest.fail(f"CI requires a real Orthanc but {reason}")
    pytest.skip(reason)


def start_orthanc(folder: Path, ports: tuple[int, int] | None = None, **overrides) -> Orthanc:
    """Write a configuration into ``folder``, start Orthanc and wait until its REST API answers.

    ``ports`` (DICOM, HTTP) reuses given ports, e.g. to start a stopped
    server again on its storage (see :func:`restart_orthanc`); default: free
    ones. ``overrides`` replace or add configuration options (e.g.
    ``Jpeg2000TransferSyntaxAccepted=False``, or ``AuthenticationEnabled=True``
    with ``RegisteredUsers``: the helper's own calls then use the first user).
    """
    exe = (
        shutil.which("Orthanc")
        or shutil.which("orthanc")
        or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    )
    if exe is None:
        _missing("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    plugin = dicomweb_plugin()
    if plugin is None:
        _missing("the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    if ports is not None:
        dicom_port, http_port = ports
    else:
        dicom_port, http_port = free_port(), free_port()
        while http_port == dicom_port:
            http_port = free_port()
    config = {
        "Name": "medlung-tests",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "DicomAet": AE_TITLE,
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,  # HTTP on loopback only
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": True,  # any calling AE may store
        "OverwriteInstances": False,  # the same SOP Instance UID is kept once
        "StorageCompression": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "HttpThreadsCount": 4,
        "ConcurrentJobs": 1,
        "DicomScpTimeout": 10,
    }
    config.update(overrides)
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = open(folder / "orthanc.log", "ab")
    process = subprocess.Popen([exe, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    users = config.get("RegisteredUsers") or {}
    credentials = next(iter(users.items())) if config.get("AuthenticationEnabled") and users else None
    server = Orthanc(AE_TITLE, dicom_port, http_port, folder, process, credentials)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            text = (folder / "orthanc.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"Orthanc exited with {process.returncode} at start:\n{text}")
        try:
            system = server.get_json("/system")
            plugins = server.get_json("/plugins")
            if "dicom-web" not in plugins:
                stop_orthanc(server)
                pytest.fail(f"Orthanc started without the DICOMweb plugin ({plugins})")
            if system.get("DicomPort") == dicom_port and _port_open(dicom_port):
                return server
        except OSError:
            pass
        time.sleep(0.2)
    stop_orthanc(server)
    pytest.fail(f"Orthanc did not answer on port {http_port} within {START_TIMEOUT_S} s")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def stop_orthanc(server: Orthanc) -> None:
    """Stop the Orthanc this module started (by its process, never by name)."""
    stop_process(server.process)


def stop_process(process: subprocess.Popen) -> None:
    """Stop a server a test started: SIGTERM, then SIGKILL after 20 s (by its process, never by name)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def restart_orthanc(server: Orthanc, **overrides) -> Orthanc:
    """Start a stopped Orthanc again on the same ports and storage (what it stored is still there)."""
    stop_orthanc(server)
    return start_orthanc(server.folder, ports=(server.dicom_port, server.http_port), **overrides)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """A real Orthanc on 127.0.0.1 with free ports, for the whole session."""
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        stop_orthanc(server)
