"""The build folder's contract is written once: stimgen/build_folder.py names every file and
column; no other module spells a build-folder file name or a stimuli.tsv column list again."""
from __future__ import annotations

import ast
from pathlib import Path

from stimgen import build_folder

PACKAGE = Path(__file__).resolve().parents[1] / "stimgen"
FILE_NAMES = {value for name, value in vars(build_folder).items()
              if name.isupper() and isinstance(value, str)
              and (name.endswith(("_TSV", "_CSV", "_JSON", "_YAML", "_HTML", "_DIR", "_FILE")))}


def string_constants(path: Path):
    """(line, text) of every string literal that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef,
                                       ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            yield node.lineno, node.value


def test_contract_names_the_files():
    assert {"stimuli.tsv", "manifest.json", "experiment", ".stimgen/files.json",
            "report.html"} <= FILE_NAMES


#: The same text meaning something else: `stimgen init`'s default file is the researcher's
#: protocol, not the build folder's copy of it.
NOT_THE_BUILD_FOLDER = {("cli/build.py", "protocol.yaml")}


def test_no_other_module_spells_a_build_folder_file_name():
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "build_folder.py":
            continue
        for line, text in string_constants(path):
            if (path.relative_to(PACKAGE).as_posix(), text) in NOT_THE_BUILD_FOLDER:
                continue
            if text in FILE_NAMES - {"experiment", "stimuli"}:   # also ordinary words
                spelled.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}")
    assert not spelled, "use the names of stimgen/build_folder.py:\n" + "\n".join(spelled)


def test_stimuli_columns_are_listed_once():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "build_folder.py":
            continue
        texts = [text for _, text in string_constants(path)]
        shared = set(texts) & {"achieved_valence", "target_arousal", "out_of_tolerance",
                               "achieved_intensity", "width"}
        assert len(shared) < 5, f"{path} lists stimuli.tsv's columns again"
