"""STOW-RS where the network is not to be trusted: plain http:// with a token, a redirect to another host,
a certificate nobody signed. Real HTTP(S) servers on loopback addresses (127.0.0.1 and 127.0.0.2: two hosts)."""

from __future__ import annotations

import http.server
import ssl
import threading
import warnings
from contextlib import contextmanager

import pytest

from medlung.pacs import DicomwebCredentials, stow_rs
from medlung.pacs.send import CredentialsWarning, plain_http_warning
from tests.pacs.certs import make_pki
from tests.pacs.test_stow_auth import film_and_seg


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the server's ``answer`` (status, headers) and counts the bytes posted to it."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0) or 0)
        self.server.posted.append(len(self.rfile.read(length)))
        status, headers = self.server.answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextmanager
def server(host: str, answer=(200, {}), tls: ssl.SSLContext | None = None):
    httpd = http.server.ThreadingHTTPServer((host, 0), _Recorder)
    httpd.posted, httpd.answer = [], answer
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def seg(tmp_path_factory, shenzhen_pixels):
    return film_and_seg(tmp_path_factory.mktemp("stow"), shenzhen_pixels)[1]


TOKEN = DicomwebCredentials(scheme="bearer", secret="s3cret-token", source="$MEDLUNG_STOW_TOKEN")


def test_a_token_over_plain_http_to_another_host_is_warned_of():
    warning = plain_http_warning("http://10.1.2.3:8042/dicom-web", TOKEN)
    assert warning and "plain http://" in warning and "10.1.2.3" in warning and "s3cret" not in warning
    assert plain_http_warning("https://10.1.2.3/dicom-web", TOKEN) is None
    assert plain_http_warning("http://127.0.0.1:8042/dicom-web", TOKEN) is None  # never leaves the machine
    assert plain_http_warning("http://10.1.2.3/dicom-web", None) is None


def test_stow_warns_in_python_and_in_the_cli(seg):
    with server("127.0.0.2") as target:
        url = f"http://127.0.0.2:{target.server_port}/dicom-web"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stow_rs([seg], url, retries=0, credentials=TOKEN)
    assert not [w for w in caught if issubclass(w.category, CredentialsWarning)]  # loopback: no warning
    with pytest.warns(CredentialsWarning, match="plain http://"):
        stow_rs([seg], "http://192.0.2.1:9/dicom-web", retries=0, timeout=0.5, credentials=TOKEN)


def test_a_redirect_to_another_host_is_not_followed(seg):
    with server("127.0.0.2") as elsewhere:
        location = f"http://127.0.0.2:{elsewhere.server_port}/dicom-web/studies"
        with server("127.0.0.1", (307, {"Location": location})) as first:
            (result,) = stow_rs([seg], f"http://127.0.0.1:{first.server_port}/dicom-web", retries=0, credentials=TOKEN)
    assert not result.ok and "redirected" in result.message and "127.0.0.2" in result.message
    assert "\n" not in result.message
    assert first.posted and not elsewhere.posted  # the SEG never reached the other host


def test_an_untrusted_certificate_is_reported_as_such(seg, tmp_path):
    pki = make_pki(tmp_path / "pki")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.rogue.cert, pki.rogue.key)
    with server("127.0.0.1", tls=context) as target:
        (result,) = stow_rs([seg], f"https://127.0.0.1:{target.server_port}/dicom-web", retries=2, backoff=0.01)
    assert not result.ok and "certificate is not trusted" in result.message and "no answer" not in result.message
    assert result.attempts == 1  # not retried: it will not get better
