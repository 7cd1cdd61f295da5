"""OHIF's prebuilt viewer and a real Orthanc's DICOMweb on one origin (127.0.0.1 only), for the viewer tests.

``/dicom-web/...`` (any method) is passed to Orthanc's DICOMweb root with
its headers, ``Host`` included (a chunked request body is passed with
its length), so that the URLs Orthanc writes into its
answers (BulkDataURI) name this origin; ``/app-config.js`` is a configuration
whose one data source is that same ``/dicom-web``; everything else is a file
of OHIF's ``dist/``, and a path that names no file gets ``index.html`` (OHIF
routes ``/viewer`` in the page). The page is cross-origin isolated
(COOP/COEP), as OHIF's own deployments serve it.
"""

from __future__ import annotations

import http.client
import mimetypes
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: The OHIF configuration served as /app-config.js: one DICOMweb source on this origin (Orthanc behind it).
APP_CONFIG = """window.config = {
  routerBasename: '/',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: 'never' },
  showErrorDetails: 'always',
  defaultDataSourceName: 'orthanc',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'orthanc',
      configuration: {
        friendlyName: 'Orthanc (medlung tests)',
        name: 'orthanc',
        wadoUriRoot: '/dicom-web',
        qidoRoot: '/dicom-web',
        wadoRoot: '/dicom-web',
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
"""

#: Headers not passed through the proxy (hop-by-hop, RFC 9110 7.6.1).
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("font/woff2", ".woff2")


class OhifServer:
    """OHIF's ``dist/`` and Orthanc's DICOMweb behind one HTTP origin on 127.0.0.1, in a background thread.

    Parameters
    ----------
    dist : pathlib.Path
        OHIF's prebuilt app (the ``dist`` folder of npm ``@ohif/app``).
    orthanc_http_port : int
        Orthanc's HTTP port on 127.0.0.1 (its DICOMweb root is ``/dicom-web``).
    port : int, optional
        The port to listen on; default a free one.
    """

    def __init__(self, dist: Path, orthanc_http_port: int, port: int = 0) -> None:
        self.dist = Path(dist).resolve()
        self.orthanc_http_port = orthanc_http_port
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status): what the page asked
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="ohif-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> OhifServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    server_state: OhifServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:
        pass  # the test keeps its own request log (OhifServer.requests)

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/dicom-web" or path.startswith("/dicom-web/"):
            status = self._proxy()
        elif self.command in ("GET", "HEAD"):
            status = self._static(path)
        else:
            status = self._send(405, b"method not allowed\n", "text/plain")
        self.server_state.requests.append((self.command, self.path, status))

    def _proxy(self) -> int:
        body = self._request_body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        connection = http.client.HTTPConnection("127.0.0.1", self.server_state.orthanc_http_port, timeout=120)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
        except OSError as exc:
            return self._send(502, f"Orthanc did not answer: {exc}\n".encode(), "text/plain")
        finally:
            connection.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self._isolation_headers()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return answer.status

    def _request_body(self) -> bytes | None:
        """The request's body, also when it comes in chunks (dicomweb-client sends large STOW-RS bodies so)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields, then the empty line
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _static(self, path: str) -> int:
        if path == "/app-config.js":
            return self._send(200, APP_CONFIG.encode(), "text/javascript")
        dist = self.server_state.dist
        target = (dist / urllib.parse.unquote(path).lstrip("/")).resolve()
        if dist not in target.parents and target != dist:
            return self._send(404, b"not found\n", "text/plain")
        if not target.is_file():
            if Path(path).suffix:  # a missing asset, not a route of the app
                return self._send(404, b"not found\n", "text/plain")
            target = dist / "index.html"
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return self._send(200, target.read_bytes(), kind)

    def _send(self, status: int, data: bytes, kind: str) -> int:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self._isolation_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return status

    def _isolation_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
