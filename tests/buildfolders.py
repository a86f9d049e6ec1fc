"""Helpers the build tests share: protocols from text, and a build folder's comparable state."""
from __future__ import annotations

import json
from pathlib import Path

import stimgen
from stimgen.storage import sha256_file

#: Manifest fields that describe the run (when, how long, which command), not its outputs.
RUN_FIELDS = ("created", "timings", "command")


def protocol_from_text(folder: Path, text: str, name: str = "protocol.yaml"):
    """Write ``text`` as ``folder/name`` and load it (relative paths resolve in ``folder``)."""
    path = Path(folder) / name
    path.write_text(text, encoding="utf-8")
    return stimgen.load_protocol(path)


def snapshot(out: Path) -> dict:
    """Every file of a build folder by relative path: its sha256, or, for the two files that
    carry the date and folder of a build, their stable content (report.html: present;
    manifest.json: without run fields and without the report's hash; the ledger
    .stimgen/files.json: without the hashes of those two). Job logs of cluster
    executors (.stimgen/jobs/) are left out: they record a run, not its outputs."""
    files = {}
    for path in sorted(Path(out).rglob("*")):
        relative = path.relative_to(out).as_posix()
        if path.is_dir() or relative.startswith(".stimgen/jobs/"):
            continue
        if relative == "report.html":
            files[relative] = "present"
        elif relative == ".stimgen/files.json":       # the ledger: hashes of the two above
            ledger = json.loads(path.read_text(encoding="utf-8"))
            for volatile in ("report.html", "manifest.json"):
                ledger["files"].pop(volatile, None)
            files[relative] = ledger
        elif relative == "manifest.json":
            manifest = json.loads(path.read_text(encoding="utf-8"))
            for volatile in RUN_FIELDS:
                manifest.pop(volatile)
            manifest["files"].pop("report.html")
            files[relative] = manifest
        else:
            files[relative] = sha256_file(path)
    return files
