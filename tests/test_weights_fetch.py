"""Downloads against a loopback HTTP server: success, resume, checksum, 404, Google Drive."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
import urllib.parse

import pytest
import torch

from stimgen.errors import StimgenError
from stimgen.weights import fetch
from stimgen.weights.fetch import (
    ChecksumMismatchError, DownloadError, add_model, drive_confirm_url, fetch_model, verify_models,
)
from stimgen.weights.registry import get_model, model_status, models_dir, read_records

PAYLOAD = bytes(range(256)) * 4096          # 1 MiB, so a cut lands mid-file
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes of the fake download server; ``server.seen`` logs (path, Range header)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        self.server.seen.append((url.path, self.headers.get("Range")))
        if url.path == "/file.bin":
            self.send_payload()
        elif url.path == "/cut.bin":
            self.send_payload(cut=self.server.cuts_left > 0)
        elif url.path == "/no-range.bin":
            self.send_payload(honour_range=False)
        elif url.path == "/drive":  # newer Drive: a form to confirm
            self.send_page('<html><body>Google Drive can\'t scan this file for viruses.'
                           '<form id="download-form" action="/drive-download" method="get">'
                           '<input type="hidden" name="id" value="ABC">'
                           '<input type="hidden" name="export" value="download">'
                           '<input type="hidden" name="confirm" value="t">'
                           '<input type="hidden" name="uuid" value="u-1"></form></body></html>')
        elif url.path == "/drive-download" and query.get("confirm") == "t" and query.get("uuid") == "u-1":
            self.send_payload()
        elif url.path == "/uc" and query.get("confirm") == "TOKEN9":  # older Drive: cookie + link
            self.send_payload()
        elif url.path == "/uc":
            self.send_page('<a href="/uc?export=download&amp;confirm=TOKEN9&amp;id=ABC">Download '
                           'anyway</a>', cookie="download_warning_13058=TOKEN9; Path=/")
        elif url.path == "/quota":
            self.send_page("<html>Too many users have viewed or downloaded this file</html>")
        else:
            self.send_error(404, "Not Found")

    def send_page(self, text, cookie=None):
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(body)

    def send_payload(self, cut=False, honour_range=True):
        start = 0
        header = self.headers.get("Range")
        if header and honour_range:
            start = int(header.removeprefix("bytes=").split("-")[0])
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.end_headers()
        if cut:  # announce the whole body, send a third, drop the connection
            self.server.cuts_left -= 1
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.seen, httpd.cuts_left = [], 0
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def serve_as(monkeypatch):
    """Point registry entry ``emonet_8`` at the test server (optionally with a known hash)."""
    def point(*urls, sha256=None, size_bytes=None):
        entry = dataclasses.replace(get_model("emonet_8"), urls=tuple(urls), sha256=sha256,
                                    size_bytes=size_bytes)
        monkeypatch.setattr(fetch, "get_model", lambda name: entry)
        return entry
    return point


def fetched(home):
    return models_dir(home) / get_model("emonet_8").file


def test_fetch_installs_checks_and_records(server, home, serve_as):
    serve_as(f"{server.url}/file.bin", sha256=DIGEST, size_bytes=len(PAYLOAD))
    path = fetch_model("emonet_8", progress=False)
    assert path == fetched(home) and path.read_bytes() == PAYLOAD
    assert read_records(models_dir(home))["emonet_8"].sha256 == DIGEST
    assert not path.with_name(path.name + ".part").exists()
    assert model_status("emonet_8").state == "recorded"  # the real entry publishes no hash
    fetch_model("emonet_8", progress=False)  # installed and checked: no second download
    assert len(server.seen) == 1


def test_unknown_sha256_is_recorded_on_first_fetch(server, home, serve_as):
    serve_as(f"{server.url}/file.bin")
    fetch_model("emonet_8", progress=False)
    assert read_records(models_dir(home))["emonet_8"].sha256 == DIGEST


def test_cut_connection_resumes_with_a_range_request(server, home, serve_as):
    server.cuts_left = 1
    serve_as(f"{server.url}/cut.bin", sha256=DIGEST)
    path = fetch_model("emonet_8", progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.seen[0] == ("/cut.bin", None)
    assert server.seen[1][1] == f"bytes={len(PAYLOAD) // 3}-"


def test_interrupted_download_keeps_part_and_next_run_resumes(server, home, serve_as):
    server.cuts_left = 1
    serve_as(f"{server.url}/cut.bin", sha256=DIGEST)
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        fetch_model("emonet_8", progress=False, retries=0)
    part = fetched(home).with_name(fetched(home).name + ".part")
    assert part.stat().st_size == len(PAYLOAD) // 3 and not fetched(home).exists()
    assert fetch_model("emonet_8", progress=False).read_bytes() == PAYLOAD
    assert server.seen[-1][1] == f"bytes={len(PAYLOAD) // 3}-"


def test_server_ignoring_range_restarts_from_zero(server, home, serve_as):
    serve_as(f"{server.url}/no-range.bin", sha256=DIGEST)
    part = fetched(home).with_name(fetched(home).name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another file")
    assert fetch_model("emonet_8", progress=False).read_bytes() == PAYLOAD


def test_checksum_mismatch_installs_nothing(server, home, serve_as):
    serve_as(f"{server.url}/file.bin", sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError) as err:
        fetch_model("emonet_8", progress=False)
    assert f"{server.url}/file.bin" in err.value.message and DIGEST in err.value.message
    assert "not installed" in err.value.message
    assert list(models_dir(home).iterdir()) == []


def test_404_names_the_url_and_the_way_out(server, home, serve_as):
    serve_as(f"{server.url}/gone.bin")
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        fetch_model("emonet_8", progress=False)
    assert f"{server.url}/gone.bin" in err.value.message
    assert "stimgen models add emonet_8 PATH" in err.value.hint
    assert not fetched(home).exists()


def test_second_source_is_tried_when_the_first_fails(server, home, serve_as):
    serve_as(f"{server.url}/gone.bin", f"{server.url}/file.bin", sha256=DIGEST)
    assert fetch_model("emonet_8", progress=False).read_bytes() == PAYLOAD


def test_unreachable_host_says_what_to_do_offline(home, serve_as):
    serve_as("http://127.0.0.1:9/nothing-listens-here")
    with pytest.raises(DownloadError, match="could not download") as err:
        fetch_model("emonet_8", progress=False, timeout=5)
    assert "offline" in err.value.hint and "stimgen models add" in err.value.hint


@pytest.mark.parametrize("route", ["/drive?id=ABC&export=download", "/uc?id=ABC&export=download"])
def test_google_drive_confirm_page_is_followed(server, home, serve_as, route):
    serve_as(server.url + route, sha256=DIGEST)
    assert fetch_model("emonet_8", progress=False).read_bytes() == PAYLOAD


def test_web_page_without_confirmation_is_an_error(server, home, serve_as):
    serve_as(f"{server.url}/quota")
    with pytest.raises(DownloadError, match="web page instead of emonet_8.pth"):
        fetch_model("emonet_8", progress=False)
    assert not fetched(home).exists()


def test_drive_confirm_url_reads_forms_links_and_cookies():
    form = ('<form action="https://drive.usercontent.google.com/download"><input name="id" '
            'value="X"><input name="confirm" value="t"><input name="uuid" value="9"></form>')
    assert drive_confirm_url(form, "https://drive.google.com/uc?id=X") == \
        "https://drive.usercontent.google.com/download?id=X&confirm=t&uuid=9"
    link = '<a href="/uc?export=download&amp;confirm=AbC_1&amp;id=X">'
    assert drive_confirm_url(link, "https://drive.google.com/uc?id=X") == \
        "https://drive.google.com/uc?export=download&confirm=AbC_1&id=X"
    cookie = type("Cookie", (), {"name": "download_warning_1", "value": "T0K"})()
    assert drive_confirm_url("<p>no form</p>", "https://d.example/uc?id=X", [cookie]) == \
        "https://d.example/uc?id=X&confirm=T0K"
    assert drive_confirm_url("<p>quota exceeded</p>", "https://d.example/uc?id=X") is None


# ----------------------------------------------------------------------------- add / verify

def emonet_like(path):
    """A small torch file with EmoNet's head key (enough for format detection)."""
    torch.save({"module.emo_fc_2.3.weight": torch.zeros(10, 128)}, path)
    return path


def test_add_copies_records_and_verify_detects_a_changed_file(home, tmp_path):
    source = emonet_like(tmp_path / "my_emonet.pth")
    installed = add_model("emonet_8", source)
    assert installed.read_bytes() == source.read_bytes() and not installed.is_symlink()
    assert model_status("emonet_8").state == "recorded"
    assert [r.state for r in verify_models(["emonet_8"])] == ["recorded"]
    installed.write_bytes(installed.read_bytes() + b"x")
    [result] = verify_models(["emonet_8"])
    assert result.state == "mismatch"
    assert result.expected == hashlib.sha256(source.read_bytes()).hexdigest()


def test_add_can_link_and_refuses_another_kind(home, tmp_path):
    source = emonet_like(tmp_path / "emonet_8.pth")
    assert add_model("emonet_8", source, link=True).resolve() == source.resolve()
    detector = tmp_path / "s3fd.pth"
    torch.save({"conv1_1.weight": torch.zeros(1), "conv3_3_norm.weight": torch.zeros(1)}, detector)
    with pytest.raises(StimgenError, match="face_alignment_s3fd checkpoint, but emonet_8 expects"):
        add_model("emonet_8", detector)


def test_add_checks_the_published_hash_prefix(home, tmp_path):
    detector = tmp_path / "s3fd.pth"
    torch.save({"conv1_1.weight": torch.zeros(1), "conv3_3_norm.weight": torch.zeros(1)}, detector)
    with pytest.raises(ChecksumMismatchError, match="expected 619a316812"):
        add_model("s3fd", detector)
    assert not (models_dir(home) / get_model("s3fd").file).exists()
    add_model("s3fd", detector, force=True)
    assert model_status("s3fd").state == "mismatch"
