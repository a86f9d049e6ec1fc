"""Downloads against a loopback HTTP server: success, checksum, 404, cuts, Google Drive."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
import urllib.parse

import pytest
import requests
import torch

from stimgen.errors import StimgenError
from stimgen.weights import fetch
from stimgen.weights.fetch import (
    GOOGLE_DRIVE_HOSTS, ChecksumMismatchError, DownloadError, add_model, fetch_model,
    verify_models,
)
from stimgen.weights.registry import get_model, model_status, models_dir, read_records

PAYLOAD = bytes(range(256)) * 4096          # 1 MiB, so a cut lands mid-file
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
#: Google's hosts as the fake server sees them: https://drive.google.com/uc -> /drive.google.com/uc
DRIVE_HOSTS = GOOGLE_DRIVE_HOSTS + ("drive.usercontent.google.com",)


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes of the fake download server; ``server.seen`` logs (path, Range header).

    Paths under ``/drive.google.com``, ``/docs.google.com`` and
    ``/drive.usercontent.google.com`` mimic Google Drive (see the ``google_drive`` fixture):
    ``/uc?id=ABC`` redirects to a usercontent page whose form confirms the download (Drive
    since 2024); ``id=OLD`` answers with a "download anyway" link and a cookie (Drive before
    2024); ``id=QUOTA`` with the quota page.
    """

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
        elif url.path == "/quota":
            self.send_page("<html>Too many users have viewed or downloaded this file</html>")
        elif url.path == "/drive.google.com/uc" and query.get("id") == "ABC":
            self.send_response(303)
            self.send_header("Location", "https://drive.usercontent.google.com/download"
                                         "?id=ABC&export=download")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/drive.usercontent.google.com/download" and query.get("id") == "ABC":
            if query.get("confirm") == "t" and query.get("uuid") == "u-1":
                self.send_payload(attachment=True)
            else:
                self.send_page(
                    "<html><body><p>Google Drive can't scan this file for viruses.</p>"
                    '<form id="download-form" action="https://drive.usercontent.google.com/'
                    'download" method="get">'
                    '<input type="hidden" name="id" value="ABC">'
                    '<input type="hidden" name="export" value="download">'
                    '<input type="hidden" name="confirm" value="t">'
                    '<input type="hidden" name="uuid" value="u-1"></form></body></html>')
        elif url.path in ("/drive.google.com/uc", "/docs.google.com/uc") and query.get("id") == "OLD":
            if query.get("confirm") == "TOKEN9":
                self.send_payload(attachment=True)
            else:
                self.send_page('<a href="/uc?export=download&amp;confirm=TOKEN9&amp;id=OLD">'
                               "Download anyway</a>",
                               cookie="download_warning_13058=TOKEN9; Path=/")
        elif url.path == "/drive.google.com/uc" and query.get("id") == "QUOTA":
            self.send_page('<html><body><p class="uc-error-subcaption">Too many users have '
                           "viewed or downloaded this file recently.</p></body></html>")
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

    def send_payload(self, cut=False, attachment=False):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(PAYLOAD)))
        if attachment:
            self.send_header("Content-Disposition", 'attachment; filename="emonet_8.pth"')
        self.end_headers()
        if cut:  # announce the whole body, send a third, drop the connection
            self.server.cuts_left -= 1
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(PAYLOAD)


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
def google_drive(server, monkeypatch):
    """Send requests for Google's hosts to the fake server (https://H/p -> server/H/p).

    The rewrite happens in requests' transport, under gdown, so gdown sees Drive URLs,
    redirects and cookies exactly as it would against Google.
    """
    send = requests.adapters.HTTPAdapter.send

    def to_server(adapter, request, *args, **kwargs):
        parts = urllib.parse.urlsplit(request.url)
        if parts.hostname in DRIVE_HOSTS:
            request = request.copy()
            request.url = f"{server.url}/{parts.hostname}{parts.path}?{parts.query}"
        return send(adapter, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", to_server)
    return server


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def serve_as(monkeypatch):
    """Point registry entry ``emonet_8`` at the test server (optionally with a known hash)."""
    def point(*urls, sha256=None, size_bytes=None, size_min_bytes=None):
        entry = dataclasses.replace(get_model("emonet_8"), urls=tuple(urls), sha256=sha256,
                                    size_bytes=size_bytes, size_min_bytes=size_min_bytes)
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
    assert sorted(p.name for p in models_dir(home).iterdir()) == ["emonet_8.pth", "verified.json"]
    assert model_status("emonet_8").state == "recorded"  # the real entry publishes no hash
    fetch_model("emonet_8", progress=False)  # installed and checked: no second download
    assert len(server.seen) == 1


def test_progress_goes_to_stderr(server, home, serve_as, capfd):
    serve_as(f"{server.url}/file.bin", sha256=DIGEST)
    fetch_model("emonet_8", progress=True)
    out, err = capfd.readouterr()
    assert out == "" and "1.05M" in err          # tqdm's bar: the megabyte sent, on stderr


def test_unknown_sha256_is_recorded_on_first_fetch(server, home, serve_as):
    serve_as(f"{server.url}/file.bin")
    fetch_model("emonet_8", progress=False)
    assert read_records(models_dir(home))["emonet_8"].sha256 == DIGEST


def test_cut_connection_is_tried_again(server, home, serve_as):
    server.cuts_left = 1
    serve_as(f"{server.url}/cut.bin", sha256=DIGEST)
    path = fetch_model("emonet_8", progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.seen == [("/cut.bin", None), ("/cut.bin", None)]


def test_interrupted_download_installs_nothing_and_next_run_starts_over(server, home, serve_as):
    server.cuts_left = 1
    serve_as(f"{server.url}/cut.bin", sha256=DIGEST)
    with pytest.raises(DownloadError, match="connection to .*/cut.bin was cut 1 time ") as err:
        fetch_model("emonet_8", progress=False, retries=0)
    assert "run the same command again" in err.value.hint
    assert list(models_dir(home).iterdir()) == []        # no partial file, no temporary one
    assert fetch_model("emonet_8", progress=False).read_bytes() == PAYLOAD


def test_leftover_part_file_is_not_installed(server, home, serve_as):
    serve_as(f"{server.url}/file.bin")
    part = fetched(home).with_name(fetched(home).name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from an older stimgen")
    assert fetch_model("emonet_8", progress=False).read_bytes() == PAYLOAD
    assert server.seen == [("/file.bin", None)] and not part.exists()


def test_checksum_mismatch_installs_nothing(server, home, serve_as):
    serve_as(f"{server.url}/file.bin", sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError) as err:
        fetch_model("emonet_8", progress=False)
    assert f"{server.url}/file.bin" in err.value.message and DIGEST in err.value.message
    assert "not installed" in err.value.message
    assert list(models_dir(home).iterdir()) == []
    assert len(server.seen) == 1                         # a wrong file is not fetched again


def test_checksum_mismatch_keeps_the_installed_file(server, home, serve_as):
    serve_as(f"{server.url}/file.bin", sha256="0" * 64)
    fetched(home).parent.mkdir(parents=True)
    fetched(home).write_bytes(b"the file the user had")
    with pytest.raises(ChecksumMismatchError):
        fetch_model("emonet_8", progress=False, force=True)
    assert fetched(home).read_bytes() == b"the file the user had"


def test_size_mismatch_installs_nothing(server, home, serve_as):
    serve_as(f"{server.url}/file.bin", size_bytes=len(PAYLOAD) + 1)
    with pytest.raises(ChecksumMismatchError, match=f"gave {len(PAYLOAD)} bytes, expected"):
        fetch_model("emonet_8", progress=False)
    assert list(models_dir(home).iterdir()) == []


def test_defect8_a_file_smaller_than_a_complete_one_is_not_installed(server, home, serve_as):
    serve_as(f"{server.url}/file.bin", size_min_bytes=len(PAYLOAD) + 1)
    with pytest.raises(ChecksumMismatchError) as err:
        fetch_model("emonet_8", progress=False)
    assert f"gave {len(PAYLOAD)} bytes, but a complete emonet_8.pth holds at least " \
           f"{len(PAYLOAD) + 1}" in err.value.message
    assert "cut short" in err.value.hint and "stimgen models add emonet_8" in err.value.hint
    assert list(models_dir(home).iterdir()) == []
    serve_as(f"{server.url}/file.bin", size_min_bytes=len(PAYLOAD))   # the bound itself is fine
    assert fetch_model("emonet_8", progress=False).read_bytes() == PAYLOAD


def test_defect8_add_refuses_a_short_file_too(home, tmp_path, serve_as):
    serve_as("http://unused.invalid/x", size_min_bytes=10 ** 9)
    short = emonet_like(tmp_path / "emonet_8.pth")
    with pytest.raises(ChecksumMismatchError, match="holds at least 1000000000"):
        add_model("emonet_8", short)


def test_404_names_the_url_and_the_way_out(server, home, serve_as):
    serve_as(f"{server.url}/gone.bin")
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        fetch_model("emonet_8", progress=False)
    assert err.value.message.startswith(f"emonet_8: {server.url}/gone.bin answered HTTP 404")
    assert "stimgen models add emonet_8 PATH" in err.value.hint
    assert not fetched(home).exists()
    assert len(server.seen) == 1                         # an HTTP error is not retried


def test_second_source_is_tried_when_the_first_fails(server, home, serve_as):
    serve_as(f"{server.url}/gone.bin", f"{server.url}/file.bin", sha256=DIGEST)
    assert fetch_model("emonet_8", progress=False).read_bytes() == PAYLOAD


def test_every_failed_source_is_listed(server, home, serve_as):
    serve_as(f"{server.url}/gone.bin", f"{server.url}/quota")
    with pytest.raises(DownloadError, match="every source failed") as err:
        fetch_model("emonet_8", progress=False)
    assert "gone.bin answered HTTP 404" in err.value.message
    assert "quota returned a web page" in err.value.message


def test_unreachable_host_says_what_to_do_offline(home, serve_as):
    serve_as("http://127.0.0.1:9/nothing-listens-here")
    with pytest.raises(DownloadError, match="could not download") as err:
        fetch_model("emonet_8", progress=False, timeout=5)
    assert err.value.message == ("emonet_8: could not download http://127.0.0.1:9/nothing-listens-"
                                 "here: [Errno 111] Connection refused")
    assert "offline" in err.value.hint and "stimgen models add emonet_8 PATH" in err.value.hint


def test_cli_prints_a_network_error_without_traceback_and_exits_2(home, serve_as):
    from click.testing import CliRunner

    from stimgen.cli import main

    serve_as("http://127.0.0.1:9/nothing-listens-here")
    result = CliRunner().invoke(main, ["models", "fetch", "emonet_8"])
    assert result.exit_code == 2, result.output
    assert "emonet_8: could not download http://127.0.0.1:9/nothing-listens-here" in result.output
    assert "stimgen models add emonet_8 PATH" in result.output
    assert "Traceback" not in result.output


def test_web_page_instead_of_the_file_is_an_error(server, home, serve_as):
    serve_as(f"{server.url}/quota")
    with pytest.raises(DownloadError, match="web page instead of emonet_8.pth"):
        fetch_model("emonet_8", progress=False)
    assert list(models_dir(home).iterdir()) == []


@pytest.mark.parametrize("file_id, visited", [
    ("ABC", ["/drive.google.com/uc", "/drive.usercontent.google.com/download",
             "/drive.usercontent.google.com/download"]),      # page with the form, then the file
    ("OLD", ["/drive.google.com/uc", "/docs.google.com/uc"]),  # page with the link, then the file
], ids=["form", "link-and-cookie"])
def test_google_drive_confirm_page_is_followed(google_drive, home, serve_as, file_id, visited):
    serve_as(f"https://drive.google.com/uc?export=download&id={file_id}", sha256=DIGEST)
    assert fetch_model("emonet_8", progress=False).read_bytes() == PAYLOAD
    assert [path for path, _ in google_drive.seen] == visited
    assert sorted(p.name for p in models_dir(home).iterdir()) == ["emonet_8.pth", "verified.json"]


def test_google_drive_quota_page_says_to_download_by_hand(google_drive, home, serve_as):
    serve_as("https://drive.google.com/uc?export=download&id=QUOTA")
    with pytest.raises(DownloadError, match="web page instead of emonet_8.pth") as err:
        fetch_model("emonet_8", progress=False)
    assert "open the link in a browser" in err.value.hint
    assert list(models_dir(home).iterdir()) == []


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
