"""Tests of the raters' known limits (stimgen/raters/limits.py): the measured numbers, and
where a researcher meets them (validate/build plan, report, closed-loop correction)."""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest

import stimgen
from buildfolders import protocol_from_text
from stimgen.backends.schematic import face_landmarks, sample_identity
from stimgen.circumplex import basic_emotions
from stimgen.raters.geometric import GeometricModel
from stimgen.raters.limits import KNOWN_LIMITS, emotion_limit, known_limits

TOLERANCE = 0.35    # the protocol's default distance tolerance


def basic_emotion_distances(seeds=range(2000, 2010)) -> dict[str, float]:
    """Mean VA distance of the geometric rater on each basic emotion drawn as its prototype,
    at intensity 1, as a build draws and rates it."""
    model, out = GeometricModel(), {}
    for emotion in basic_emotions():
        target = emotion.target_va(1.0)
        distances = []
        for seed in seeds:
            person = sample_identity(seed)
            face = face_landmarks(person, *target, prototype=emotion.prototype)
            distances.append(np.hypot(*np.subtract(model.rate(face, face_landmarks(person, 0, 0)),
                                                   target)))
        out[emotion.key] = float(np.mean(distances))
    return out


def test_geometric_limits_are_the_measured_ones_and_complete():
    measured = basic_emotion_distances()
    listed = KNOWN_LIMITS["geometric"]
    for key, distance in measured.items():
        if key in listed:
            assert listed[key].distance == pytest.approx(distance, abs=0.05), key
            assert distance > TOLERANCE, f"{key} is read within tolerance now: drop its limit"
        else:
            assert distance < TOLERANCE, f"{key} misses by {distance:.2f}: list it in KNOWN_LIMITS"
    assert not listed["contempt"].readable       # asymmetry is not measured
    assert all(limit.readable for key, limit in listed.items() if key != "contempt")


PROTOCOL = """\
study: {name: limits}
seed: 3
backend: {name: schematic}
identities: [{id: id01, seed: 4}]
targets: {emotions: [contempt, disgust, circumplex:angry], intensities: [1.0], neutral: true}
validation: {rater: geometric}
output: {image_size: 64}
"""


def test_plan_notes_the_basic_emotions_the_rater_reads_poorly(tmp_path):
    from stimgen.cli.plan_summary import plan_summary

    summary = plan_summary(protocol_from_text(tmp_path, PROTOCOL), None)
    notes = [line for line in summary.splitlines() if line.startswith("note")]
    assert len(notes) == 1, notes        # Angry is a circumplex blend, read where it was fitted
    assert "geometric cannot read contempt's one-sided smile" in notes[0]
    assert "hsemotion or human norms" in notes[0]
    without = plan_summary(protocol_from_text(tmp_path, PROTOCOL.replace("contempt, ", "")), None)
    assert "cannot read" not in without


def test_limits_hold_for_prototypes_only():
    assert emotion_limit("geometric", "Anger").emotion == "anger"
    assert emotion_limit("geometric", "Angry") is None
    assert emotion_limit("geometric", "neutral") is None
    assert emotion_limit("hsemotion", "Contempt") is None
    assert known_limits(["geometric"], ["contempt"], backend="emostyle") == []


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("limits")
    return stimgen.build(protocol_from_text(folder, PROTOCOL), out=folder / "out",
                         progress=False)


def test_report_marks_contempt_in_the_flags_and_the_emotion_table(built):
    from buildfolders import parse_page

    page = html.unescape((built.out / "report.html").read_text(encoding="utf-8"))
    flagged = page[page.index('id="table-flagged"'):page.index('id="references"')
                   if 'id="references"' in page else None]
    assert "geometric cannot read contempt's one-sided smile" in flagged
    by_emotion = page[page.index('id="table-by-emotion"'):page.index('id="by-intensity"')]
    table = by_emotion[:by_emotion.index("</tbody>")]
    rows = [row for row in table.split("<tr") if "rater limit" in row]
    assert len(rows) == 1 and "Contempt" in rows[0], rows
    assert "Contempt: geometric cannot read" in by_emotion
    parse_page(built.out / "report.html")      # still well-formed


CORRECTED = PROTOCOL.replace("validation: {rater: geometric}",
                             "validation: {rater: geometric, correction: {iterations: 3}}")


def test_correction_skips_the_prototype_the_steering_rater_cannot_read(tmp_path):
    from stimgen.build_folder import CORRECTION

    result = stimgen.build(protocol_from_text(tmp_path, CORRECTED), out=tmp_path / "out",
                           progress=False)
    stimuli = pd.read_csv(result.out / "stimuli.tsv", sep="\t").set_index("emotion")
    assert stimuli.loc["Contempt", CORRECTION.rounds] == 0
    assert stimuli.loc["Contempt", CORRECTION.requested_valence] == pytest.approx(
        stimuli.loc["Contempt", "target_valence"])
    # the others are steered as before
    assert stimuli.loc[["Disgust", "Angry"], CORRECTION.rounds].sum() > 0
