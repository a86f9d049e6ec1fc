"""Full disks, refused permissions and read-only folders: a clear error, exit status 2, and
nothing half-written presented as done.

Guarantee (docs/reliability.md). Faults are simulated (os.replace raising the errno the kernel
would) at every kind of file, and made real where this machine allows: a file-size limit
(RLIMIT_FSIZE, any Unix) and a tiny or read-only tmpfs in a user namespace (Linux, skipped
where unprivileged namespaces are off).
"""
from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import stimgen
from stimgen.build_folder import LOCK_OWNER_JSON, lock_is_free
from stimgen.cli import main
from stimgen.errors import BuildError

STIMGEN = [sys.executable, "-c", "from stimgen.cli import main; main()"]
PROTOCOL = """\
study: {name: disk}
identities:
  - {id: id01, seed: 1}
  - {id: id02, seed: 2}
targets: {emotions: [circumplex:happy, circumplex:sad], intensities: [1.0], neutral: true}
output: {image_size: 96}
"""
ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "quota",
          errno.EACCES: "Permission denied", errno.EROFS: "read-only"}


@pytest.fixture(scope="module")
def protocol_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("protocol") / "p.yaml"
    path.write_text(PROTOCOL, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def protocol(protocol_file):
    return stimgen.load_protocol(protocol_file)


def _fail_replace_of(monkeypatch, name: str, code: int) -> None:
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def assert_nothing_half_written(out: Path) -> None:
    """No manifest, no temporary file, and every stimulus under its final name is whole."""
    from PIL import Image

    assert not (out / "manifest.json").exists()
    assert not [p for p in out.rglob("*.tmp")]
    for png in (out / "stimuli").glob("*.png") if (out / "stimuli").is_dir() else []:
        with Image.open(png) as image:
            image.load()


@pytest.mark.parametrize("name", ["id01_happy_i100.png", "id02.json", "stimuli.tsv",
                                  "circumplex.svg", "report.html", "manifest.json",
                                  "files.json"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_failed_write_is_a_clear_error_and_resumes_later(protocol, tmp_path, monkeypatch,
                                                         name, code):
    out = tmp_path / "build"
    with monkeypatch.context() as patch:
        _fail_replace_of(patch, name, code)
        with pytest.raises(BuildError) as caught:
            stimgen.build(protocol, out=out, progress=False, jobs=1)
    assert ERRORS[code] in str(caught.value) and "-o" in caught.value.hint
    assert_nothing_half_written(out)
    assert lock_is_free(out) and not (out / LOCK_OWNER_JSON).exists()
    stimgen.build(protocol, out=out, progress=False, jobs=1)     # space freed: it completes
    assert (out / "manifest.json").is_file()


@pytest.mark.parametrize("code", list(ERRORS))
def test_cli_exits_2_with_message_and_no_traceback(protocol_file, tmp_path, monkeypatch, code):
    _fail_replace_of(monkeypatch, "stimuli.tsv", code)
    result = CliRunner().invoke(main, ["-q", "build", str(protocol_file), "-o",
                                       str(tmp_path / "b")])
    assert result.exit_code == 2
    assert ERRORS[code] in result.output and "Traceback" not in result.output


def test_real_file_size_limit(protocol_file, tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past 10 kB (EFBIG), as a full disk would."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))

    out = tmp_path / "build"
    run = subprocess.run([*STIMGEN, "-q", "build", str(protocol_file), "-o", str(out)],
                         preexec_fn=limit, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "larger than this system allows" in run.stderr and "Traceback" not in run.stderr
    assert_nothing_half_written(out)


def _namespace_mount_works() -> bool:
    if not shutil.which("unshare") or sys.platform != "linux":
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _namespace_mount_works(),
                                 reason="unprivileged user namespaces with tmpfs are not allowed")


def _build_on_tmpfs(protocol_file: Path, mount: Path, options: str) -> subprocess.CompletedProcess:
    """Build into a fresh tmpfs mounted at ``mount`` (only inside a private namespace)."""
    mount.mkdir()
    command = " ".join([
        f"mount -t tmpfs -o {options} tmpfs {mount} &&",
        *map(str, STIMGEN[:2]), repr(STIMGEN[2]), "-q", "build", str(protocol_file),
        "-o", f"{mount}/out; status=$?;",
        f"test -e {mount}/out/manifest.json && echo MANIFEST_PRESENT;",
        f"find {mount} -name '*.tmp' | grep -q . && echo TEMPORARIES_LEFT; exit $status"])
    return subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True,
                          text=True, timeout=120)


@needs_mount
def test_real_full_disk(protocol_file, tmp_path):
    run = _build_on_tmpfs(protocol_file, tmp_path / "small-disk", "size=64k")
    assert run.returncode == 2, run.stderr
    assert "the disk is full" in run.stderr and "Traceback" not in run.stderr
    assert "MANIFEST_PRESENT" not in run.stdout and "TEMPORARIES_LEFT" not in run.stdout


@needs_mount
def test_real_read_only_file_system(protocol_file, tmp_path):
    run = _build_on_tmpfs(protocol_file, tmp_path / "read-only", "ro,size=1m")
    assert run.returncode == 2, run.stderr
    assert "read-only" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_real_permission_denied(protocol, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(BuildError, match="Permission denied|permission"):
            stimgen.build(protocol, out=locked / "out", progress=False, jobs=1)
    finally:
        locked.chmod(0o755)
