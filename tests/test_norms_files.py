"""Ratings files as spreadsheets save them: Excel's Windows-1252 "CSV", semicolon-separated
CSV with decimal commas, UTF-16 and tab-separated text are read correctly, each with a note
naming what was read; a file that is no text table is refused with a hint for every source."""
from __future__ import annotations

import pandas as pd
import pytest

from stimgen.norms.read import Experiment, NormsError, read_responses

IDS = ("id01_happy", "id01_sad")
EXPERIMENT = Experiment(name=None, stimulus_ids=frozenset(IDS), file_names={},
                        scales={"valence": (1.0, 9.0), "arousal": (1.0, 9.0)}, label_keys={},
                        catch_key=None, trials_per_group={})
ROWS = [("Zoë", "id01_happy", "7.5", "6", "fröhlich"), ("Zoë", "id01_sad", "2", "3.5", "traurig"),
        ("José", "id01_happy", "8", "5", "fröhlich"), ("José", "id01_sad", "1.5", "4", "traurig")]


def write(path, delimiter=",", encoding="utf-8", decimal="."):
    lines = [delimiter.join(("participant", "stimulus", "valence", "arousal", "label"))]
    lines += [delimiter.join(cell.replace(".", decimal) if cell[0].isdigit() else cell
                             for cell in row) for row in ROWS]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def table(responses) -> list[tuple]:
    return [(r.participant, r.stimulus_id, r.valence, r.arousal, r.label)
            for r in responses.table.itertuples()]


EXPECTED = [("Zoë", "id01_happy", 7.5, 6.0, "fröhlich"), ("Zoë", "id01_sad", 2.0, 3.5, "traurig"),
            ("José", "id01_happy", 8.0, 5.0, "fröhlich"), ("José", "id01_sad", 1.5, 4.0, "traurig")]


def test_utf8_comma_csv_reads_without_notes(tmp_path):
    responses = read_responses([write(tmp_path / "r.csv")], EXPERIMENT)
    assert table(responses) == EXPECTED and responses.warnings == []


def test_excel_latin1_csv_is_read_with_its_accents_and_a_note(tmp_path):
    path = write(tmp_path / "excel.csv", encoding="cp1252")
    responses = read_responses([path], EXPERIMENT)
    assert table(responses) == EXPECTED
    assert any(f"{path}: read as Windows-1252 (Latin-1) text, not UTF-8" in w
               for w in responses.warnings)


def test_semicolon_csv_with_decimal_commas_is_read_with_a_note(tmp_path):
    path = write(tmp_path / "europe.csv", delimiter=";", encoding="cp1252", decimal=",")
    responses = read_responses([path], EXPERIMENT)
    assert table(responses) == EXPECTED
    notes = " ".join(responses.warnings)
    assert "fields separated by semicolons, not commas" in notes
    assert "decimal commas read as points" in notes and "Windows-1252" in notes


@pytest.mark.parametrize("delimiter,encoding", [("\t", "utf-8"), (",", "utf-16")])
def test_tab_separated_and_utf16_text_are_read(tmp_path, delimiter, encoding):
    path = write(tmp_path / "export.csv", delimiter=delimiter, encoding=encoding)
    assert table(read_responses([path], EXPERIMENT)) == EXPECTED


def test_a_file_that_is_not_text_is_refused_with_a_hint_for_every_source(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_bytes(b"participant,stimulus\n\x81\x8d\x8f\x90\x9d\n")
    with pytest.raises(NormsError) as refused:
        read_responses([path], EXPERIMENT)
    assert str(path) in refused.value.message and "neither UTF-8 nor Windows-1252" in \
        refused.value.message
    assert "CSV UTF-8" in refused.value.hint and "Pavlovia" in refused.value.hint


def test_a_semicolon_file_without_the_needed_columns_names_them(tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"who": ["a"], "what": ["b"]}).to_csv(path, sep=";", index=False)
    with pytest.raises(NormsError, match="tidy ratings CSV"):
        read_responses([path], EXPERIMENT)
