"""Closed-loop accuracy correction (stimgen/correction.py, issue 18): the Broyden loop on known
maps, a schematic build steered by the geometric rater, the judge rater, the report's honesty
note, the cache key, and the loop end to end on the tiny emostyle models."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import stimgen
from buildfolders import parse_page, protocol_from_text, snapshot
from stimgen.build_folder import CORRECTION, CORRECTION_COLUMNS, LOW_LEVEL_COLUMNS
from stimgen.correction import PATIENCE, broyden_update, clip_request, correct, next_request
from stimgen.errors import ProtocolError

finite = st.floats(-3.0, 3.0, allow_nan=False)


# --- the loop on known maps ------------------------------------------------------------------

def rotation(degrees: float) -> np.ndarray:
    theta = np.radians(degrees)
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


@pytest.mark.parametrize("gain", [
    0.6 * np.eye(2),                              # the generator under-delivers
    0.8 * rotation(25.0),                         # ... and misses the direction
    np.array([[0.9, 0.2], [-0.1, 0.5]]),          # arousal weak, valence leaks into it
])
def test_the_loop_reaches_targets_of_a_linear_generator(gain):
    targets = 0.6 * np.array([[0.4, 0.2], [-0.3, 0.5], [0.2, -0.45], [-0.5, -0.2]])   # reachable
    calls = []

    def measure(indices, requests):
        calls.append(len(indices))
        return requests @ gain.T

    result = correct(targets, targets @ gain.T, measure, iterations=8, max_request=1.0,
                     tolerance=0.005)
    assert (result.error_before > 0.03).all()
    assert (result.error_after <= 0.005).all()
    np.testing.assert_allclose(result.requested @ gain.T, targets, atol=0.005)
    assert calls[0] == 4 and all(a >= b for a, b in zip(calls, calls[1:]))   # one batch a round
    assert (result.rounds == result.best_round).all()      # improving maps: the last is best


def test_requests_never_leave_the_radius_and_the_best_round_is_kept():
    targets = np.array([[0.5, 0.0], [0.0, -0.55]])
    seen = []

    def measure(indices, requests):
        seen.extend(np.hypot(*requests.T))
        return 0.5 * requests                     # would need requests of radius 1 or more

    result = correct(targets, 0.5 * targets, measure, iterations=5, max_request=0.6,
                     tolerance=0.01)
    assert max(seen) <= 0.6 + 1e-12
    np.testing.assert_allclose(np.hypot(*result.requested.T), 0.6)
    assert result.rounds.tolist() == [1, 1]       # stuck against the radius: stops early
    np.testing.assert_allclose(result.error_after, np.hypot(*targets.T) - 0.3)   # 0.5 x 0.6


def test_a_round_that_makes_things_worse_is_not_kept():
    targets = np.array([[0.5, 0.0]])
    first = np.array([[0.4, 0.0]])
    result = correct(targets, first, lambda i, r: np.array([[-0.5, 0.3]]), iterations=3,
                     max_request=1.0, tolerance=0.01)
    assert result.best_round.tolist() == [0]
    assert result.rounds.tolist() == [PATIENCE]          # gives up after PATIENCE failures
    np.testing.assert_array_equal(result.requested, targets)
    np.testing.assert_allclose(result.error_after, result.error_before)


def test_stimuli_within_tolerance_or_not_correctable_are_not_measured():
    targets = np.array([[0.5, 0.0], [0.0, 0.5], [0.0, 0.0]])
    first = np.array([[0.5, 0.01], [0.0, 0.2], [0.1, 0.1]])
    measured = []
    result = correct(targets, first, lambda i, r: (measured.extend(i.tolist()), r)[1],
                     iterations=2, max_request=1.0, tolerance=0.05,
                     correctable=[True, True, False])
    assert set(measured) == {1}
    assert result.rounds.tolist()[::2] == [0, 0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=6),
       st.floats(0.05, 1.0))
def test_clip_request_keeps_requests_in_the_radius_and_the_square(points, radius):
    clipped = clip_request(points, radius)
    assert (np.hypot(*clipped.T) <= radius + 1e-9).all() and (np.abs(clipped) <= 1.0).all()
    inside = np.hypot(*np.asarray(points).T) <= radius
    np.testing.assert_allclose(clipped[inside], np.asarray(points)[inside])


@settings(max_examples=60, deadline=None)
@given(st.tuples(*[finite] * 4), st.tuples(finite, finite), st.tuples(finite, finite))
def test_broyden_update_satisfies_the_secant_equation(entries, step, change):
    s = np.array(step)
    if s @ s < 1e-6:
        return
    J = broyden_update(np.array(entries).reshape(1, 2, 2), [step], [change])[0]
    np.testing.assert_allclose(J @ s, change, atol=1e-9)
    orthogonal = np.array([-s[1], s[0]])
    np.testing.assert_allclose(J @ orthogonal, np.array(entries).reshape(2, 2) @ orthogonal,
                               atol=1e-9)


def test_next_request_with_the_identity_moves_by_the_miss():
    step = next_request([[0.2, 0.1]], [[0.1, 0.1]], [[0.3, 0.0]], np.eye(2)[None], 1.0)
    np.testing.assert_allclose(step, [[0.2 + 0.2 / 1.01, 0.1 - 0.1 / 1.01]])


# --- builds ------------------------------------------------------------------------------------

CORRECTED = """\
study: {name: corrected}
seed: 3
backend: {name: schematic}
identities: [{id: id01, seed: 4}]
targets: {emotions: [bored, tired, relaxed, serene, circumplex:happy, afraid], intensities: [0.5, 1.0],
          neutral: true}
validation:
  rater: geometric
  correction: {rater: geometric, iterations: 4}
output: {image_size: 64}
"""


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corrected")
    plain = stimgen.build(protocol_from_text(folder, CORRECTED.replace(
        "  correction: {rater: geometric, iterations: 4}\n", ""), "plain.yaml"),
        out=folder / "plain", progress=False)
    result = stimgen.build(protocol_from_text(folder, CORRECTED), out=folder / "out",
                           progress=False)
    return folder, plain, result


def test_correction_lowers_the_error_overall_and_in_the_weak_region(corrected):
    _, plain, result = corrected
    table = result.stimuli
    # the correction columns, then the low-level measures every build has (issue 17)
    assert list(table.columns[-8:-3]) == list(CORRECTION_COLUMNS[:5])
    assert list(table.columns[-3:]) == list(LOW_LEVEL_COLUMNS)
    assert CORRECTION.held_out_before not in table       # no judge: geometric rates alone
    named = table[table["target_kind"] != "neutral"]
    before, after = named[CORRECTION.steering_before], named[CORRECTION.steering_after]
    np.testing.assert_allclose(before, plain.stimuli.loc[named.index, "distance_error"],
                               atol=1e-9)                 # round 0 is the uncorrected build
    np.testing.assert_allclose(after, named["distance_error"], atol=1e-9)
    assert (after <= before + 1e-12).all()
    weak = named["weak_region"]
    assert after[weak].mean() < 0.8 * before[weak].mean()
    assert after.mean() < 0.8 * before.mean()
    assert (named[CORRECTION.rounds] > 0).any()
    assert (np.hypot(named[CORRECTION.requested_valence], named[CORRECTION.requested_arousal])
            <= 1.0 + 1e-9).all()
    neutral = table[table["target_kind"] == "neutral"].iloc[0]
    assert neutral[CORRECTION.rounds] == 0 and neutral[CORRECTION.requested_valence] == 0.0
    moved = named[CORRECTION.rounds] > 0
    changed = table.loc[moved[moved].index, "sha256"] != plain.stimuli.loc[moved[moved].index,
                                                                            "sha256"]
    assert changed.any()                                  # the kept faces were saved


def test_the_written_table_has_the_correction_columns(corrected):
    _, _, result = corrected
    written = pd.read_csv(result.out / "stimuli.tsv", sep="\t")
    np.testing.assert_allclose(written[CORRECTION.steering_after],
                               result.stimuli[CORRECTION.steering_after], atol=1e-5)
    assert written[CORRECTION.rounds].dtype.kind == "i"


def test_the_report_says_the_figures_are_the_steering_raters_own(corrected):
    _, _, result = corrected
    text = (result.out / "report.html").read_text(encoding="utf-8")
    assert 'id="correction"' in text and "optimistic by construction" in text
    rows = {r[0][2]: r for r in parse_page(result.out / "report.html").tables["table-correction"]
            if r and r[0][0] == "th"}
    weak = [label for label in rows if label.startswith("weak region")]
    table = result.stimuli
    in_weak = table[table["weak_region"]]
    cells = [c[2] for c in rows[weak[0]][1:]]
    assert cells[0] == str(len(in_weak))
    assert cells[3] == f"{in_weak[CORRECTION.steering_before].mean():.3f}"
    assert cells[4] == f"{in_weak[CORRECTION.steering_after].mean():.3f}"


def test_rebuilds_are_identical_and_settings_are_part_of_the_cache_key(corrected):
    folder, _, result = corrected
    first = snapshot(result.out)
    again = stimgen.build(protocol_from_text(folder, CORRECTED), out=folder / "out",
                          progress=False)
    assert again.reused_identities == ["id01"] and snapshot(again.out) == first
    fresh = stimgen.build(protocol_from_text(folder, CORRECTED), out=folder / "fresh",
                          progress=False)
    assert fresh.reused_identities == [] and snapshot(fresh.out) == first
    one_round = stimgen.build(protocol_from_text(folder, CORRECTED.replace(
        "iterations: 4", "iterations: 1")), out=folder / "out", progress=False)
    assert one_round.reused_identities == []
    assert one_round.stimuli[CORRECTION.rounds].max() == 1


def test_another_rater_judges_and_the_report_quotes_it(tmp_path, tiny_home, monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tiny_home))
    text = (CORRECTED.replace("  rater: geometric\n", "  rater: geometric\n  also: [emonet]\n")
            .replace("[bored, tired, relaxed, serene, happy, afraid], intensities: [0.5, 1.0]",
                     "[tired, serene, happy], intensities: [1.0]"))
    result = stimgen.build(protocol_from_text(tmp_path, text), out=tmp_path / "out",
                           progress=False)
    table = result.stimuli
    assert (table["rater"] == "emonet").all()             # the judge is the primary rater
    np.testing.assert_array_equal(table["valence_emonet"], table["achieved_valence"])
    named = table[table["target_kind"] != "neutral"]
    steered = np.hypot(named["valence_geometric"] - named["target_valence"],
                       named["arousal_geometric"] - named["target_arousal"])
    np.testing.assert_allclose(steered, named[CORRECTION.steering_after], atol=1e-9)
    assert named[CORRECTION.held_out_before].notna().all()
    manifest = json.loads((result.out / "manifest.json").read_text())
    assert [r["name"] for r in manifest["raters"]] == ["emonet", "geometric"]
    page = (result.out / "report.html").read_text(encoding="utf-8")
    assert "Accuracy figures come from emonet, which did not steer the correction." in page
    assert "optimistic by construction; quote the held-out ones" in page
    assert 'data-metric="held-out-after"' in page


@pytest.mark.parametrize("setting, message", [
    ("{max_request: 1.5}", "less than or equal to 1"),
    ("{iterations: 0}", "greater than or equal to 1"),
    ("{rater: judge}", "rater"),
])
def test_bad_correction_settings_are_refused(tmp_path, setting, message):
    with pytest.raises(ProtocolError, match=message):
        protocol_from_text(tmp_path, CORRECTED.replace("{rater: geometric, iterations: 4}",
                                                       setting))


def test_the_loop_runs_end_to_end_on_the_tiny_emostyle_models(tmp_path, tiny_home, monkeypatch):
    monkeypatch.setenv("STIMGEN_HOME", str(tiny_home))
    text = """\
study: {name: tiny-corrected}
seed: 3
backend:
  name: emostyle
  options: {batch_size: 2}
identities: [{id: s1, seed: 1}]
targets: {emotions: [tired, circumplex:happy], intensities: [1.0], neutral: true}
validation: {correction: {iterations: 2, tolerance: 0.001}}
output: {image_size: 64}
"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # TinyWeightsWarning: expected here
        result = stimgen.build(protocol_from_text(tmp_path, text), out=tmp_path / "out",
                               progress=False)
    table = result.stimuli
    named = table[table["target_kind"] != "neutral"]
    assert (table["rater"] == "emonet").all()           # auto steers with emonet, alone here
    assert (named[CORRECTION.rounds] >= 1).all()        # both stimuli, one GPU batch a round
    assert (named[CORRECTION.steering_after] <= named[CORRECTION.steering_before] + 1e-12).all()
    np.testing.assert_allclose(named[CORRECTION.steering_after], named["distance_error"],
                               atol=1e-6)
    assert 'id="correction-honesty"' in (result.out / "report.html").read_text()


# --- the documentation -------------------------------------------------------------------------

def test_the_documented_example_and_defaults_are_the_code(capsys):
    import re
    from pathlib import Path

    from stimgen.protocol.models import Correction

    text = (Path(__file__).resolve().parents[1] / "docs" / "correction.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "docs/correction.md", "exec"), {})
    printed = capsys.readouterr().out.strip()
    assert "# " + printed in code
    snippet = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    for field in ("rater", "iterations", "max_request", "tolerance"):
        value = re.search(rf"{field}: (\S+)", snippet.split("correction:")[1]).group(1)
        assert value == str(Correction.model_fields[field].default)


def test_validate_prints_the_correction_plan(tmp_path):
    from stimgen.cli.plan_summary import plan_summary

    summary = plan_summary(protocol_from_text(tmp_path, CORRECTED), None)
    assert "correction  geometric steers, up to 4 rounds per stimulus" in summary


def test_clips_of_corrected_stimuli_ramp_to_the_kept_request(tmp_path, monkeypatch):
    """With output.dynamic, a corrected stimulus's clip is the onset of the face that was
    kept: its frames are drawn along the kept request, not the original target."""
    import stimgen.render as render
    ramps = {}
    original = render.render_clips

    def spy(draw, targets, *args, **kwargs):
        for target in targets:
            ramps[target.key, target.intensity] = (target.valence, target.arousal)
        return original(draw, targets, *args, **kwargs)

    monkeypatch.setattr(render, "render_clips", spy)
    text = CORRECTED.replace("output: {image_size: 64}",
                             "output: {image_size: 64, dynamic: {frames: 4, hold_ms: 0}}")
    result = stimgen.build(protocol_from_text(tmp_path, text), out=tmp_path / "out",
                           progress=False)
    table = result.stimuli
    requested = table[[CORRECTION.requested_valence, CORRECTION.requested_arousal]].to_numpy()
    target = table[["target_valence", "target_arousal"]].to_numpy()
    assert (np.hypot(*(requested - target).T) > 0.01).any()      # some kept request moved
    for row in result.stimuli.itertuples():
        key = row.stimulus_id.split("_", 1)[1].rsplit("_i", 1)[0]
        got = ramps[key, row.intensity]
        np.testing.assert_allclose(got, (getattr(row, CORRECTION.requested_valence),
                                         getattr(row, CORRECTION.requested_arousal)), atol=1e-6)
