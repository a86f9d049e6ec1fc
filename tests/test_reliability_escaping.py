"""Protocol text is inert wherever it lands: the HTML report, the bundle's README, the .psyexp,
the compiled PsychoPy script and every CSV/TSV (no spreadsheet formula can run).

Guarantee (docs/reliability.md): one build from a protocol whose every free-text field is an
attack, then each output is parsed the way its reader would parse it.
"""
from __future__ import annotations

import ast
import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

import stimgen
from stimgen.safety import spreadsheet_safe

SCRIPT = '<script>alert("pwned")</script>'
IMG = "<img src=x onerror=alert(1)>"
PYTHON = "\"\"\"'; import os; os.system('touch /tmp/stimgen-pwned') #"
FORMULAS = ['=HYPERLINK("http://evil.example","click")', "@SUM(1+1)*cmd|' /C calc'!A0",
            "+1+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0"]
HOSTILE_TEXT = f"{SCRIPT} {IMG} {PYTHON} $x {{{{ 7*7 }}}} ]]> & [link](javascript:x)"

PROTOCOL = {
    "study": {"name": f"Evil {SCRIPT}", "description": HOSTILE_TEXT,
              "authors": [IMG, FORMULAS[0], PYTHON]},
    "identities": [{"id": "id01", "seed": 1}],
    "targets": {"emotions": ["circumplex:happy", "circumplex:sad", "afraid", "tired"], "intensities": [1.0]},
    "output": {"image_size": 96},
    "experiment": {
        "task": {"type": "categorization", "prompt": HOSTILE_TEXT,
                 "choices": [{"label": label, "emotions": [emotion]}
                             for label, emotion in zip(FORMULAS,
                                                       ["happy", "sad", "afraid", "tired"])]},
        "text": {"instructions": HOSTILE_TEXT, "goodbye": PYTHON, "break_text": SCRIPT},
        "design": {"type": "random", "participants": 2},
    },
}


@pytest.fixture(scope="module")
def hostile_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    path = folder / "evil.yaml"
    path.write_text(yaml.safe_dump(PROTOCOL, allow_unicode=True), encoding="utf-8")
    return stimgen.build(stimgen.load_protocol(path), out=folder / "build", progress=False,
                         jobs=1).out


def test_report_shows_protocol_text_as_text(hostile_build):
    html = (hostile_build / "report.html").read_text(encoding="utf-8")
    assert SCRIPT not in html and IMG not in html
    assert "&lt;script&gt;alert(" in html                 # shown, escaped
    assert "javascript:x" not in html.replace("[link](javascript:x)", "")


def test_bundle_readme_is_inert_markdown(hostile_build):
    readme = (hostile_build / "experiment" / "README.md").read_text(encoding="utf-8")
    # Protocol text is shown literally, in code spans or blocks; outside them, nothing of it
    # could be read as HTML or a link.
    interpreted = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1[ \t]*$", "", readme)
    interpreted = re.sub(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", "", interpreted, flags=re.S)
    assert "<script" not in interpreted and "<img" not in interpreted
    assert "](javascript:" not in interpreted
    assert "`Evil <script>alert(\"pwned\")</script>`" in readme  # shown, not escaped


def test_psyexp_is_well_formed_xml_holding_the_literal_text(hostile_build):
    psyexp = next((hostile_build / "experiment").glob("*.psyexp"))
    root = ET.parse(psyexp).getroot()                       # raises on broken XML
    values = [p.get("val") or "" for p in root.iter("Param")]
    assert any(SCRIPT in v for v in values)                 # kept as data, not markup


def test_compiled_script_is_valid_python_that_runs_no_protocol_text(hostile_build):
    script = next(p for p in (hostile_build / "experiment").glob("*.py")
                  if p.name != "run_simulated.py")
    tree = ast.parse(script.read_text(encoding="utf-8"))
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and isinstance(n.value, str)]
    assert any(PYTHON in s for s in strings)               # the text is a string literal
    called = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "os.system" not in called and "alert" not in called


def _cells(path: Path, delimiter: str) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle, delimiter=delimiter) for cell in row]


def test_no_csv_or_tsv_cell_is_a_spreadsheet_formula(hostile_build):
    tables = [*hostile_build.rglob("*.csv"), *hostile_build.rglob("*.tsv")]
    assert any(p.parent.name == "conditions" for p in tables)
    seen_labels = 0
    for table in tables:
        for cell in _cells(table, "\t" if table.suffix == ".tsv" else ","):
            assert spreadsheet_safe(cell) == cell, f"{table.name}: {cell!r}"
            seen_labels += cell.startswith("'") and cell[1:] in FORMULAS
    assert seen_labels > 0                                  # the labels are there, escaped


@pytest.mark.parametrize("cell,expected", [
    ("=1+1", "'=1+1"), ("+1", "+1"), ("-0.25", "-0.25"), ("-1e-3", "-1e-3"), ("-inf", "-inf"),
    ("-x", "'-x"), ("@x", "'@x"), ("\t=x", "'\t=x"), ("happy", "happy"), ("", ""),
    ("a=b", "a=b"), (-3.5, -3.5), (None, None)])
def test_spreadsheet_safe_escapes_text_not_numbers(cell, expected):
    assert spreadsheet_safe(cell) == expected


def test_manifest_keeps_protocol_text_verbatim(hostile_build):
    manifest = json.loads((hostile_build / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["protocol"]["normalized"]["study"]["description"] == HOSTILE_TEXT
