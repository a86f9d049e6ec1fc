"""Human norms: the statistics against independent computations on synthetic ratings with known
truth (rater bias and noise), the readers of PsychoPy data files and tidy CSVs on bad input,
and the full loop build -> simulated participants under Xvfb -> `stimgen norms` -> report."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from stimgen.build_folder import NORMS_SUMMARY_JSON, NORMS_TSV, read_build_folder
from stimgen.cli import main
from stimgen.finish import write_norms
from stimgen.norms import compute_norms, correct_labels, experiment_of
from stimgen.norms.read import NormsError, read_responses
from stimgen.norms.stats import (icc2, krippendorff_alpha_interval, mean_ci, rescale,
                                 unbiased_hit_rates)

XVFB_RUN = shutil.which("xvfb-run")

PROTOCOL = """\
study: {name: norming pilot}
seed: 3
backend: {name: schematic}
identities:
  - {id: id01, seed: 4}
  - {id: id02, seed: 5}
targets:
  emotions: [circumplex:happy, circumplex:sad, circumplex:angry]
  intensities: [1.0]
validation: {rater: geometric}
output: {image_size: 64, format: png}
experiment:
  task:
    type: norming
    labels: [happy, sad, angry]
    catch: {trials: 1}
  timing: {fixation_ms: 200, iti_ms: 200}
  design: {type: random, participants: 3}
"""


# -- synthetic raters with known truth -------------------------------------------------------
def synthetic_ratings(n_stimuli=12, n_raters=8, noise=0.6, seed=0):
    """Ratings on 1-9: true scale value per stimulus + a bias per rater + noise."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(2.5, 7.5, n_stimuli)
    bias = rng.normal(0.0, 0.5, n_raters)
    ratings = truth[:, None] + bias[None, :] + rng.normal(0.0, noise, (n_stimuli, n_raters))
    return truth, bias, ratings


def test_mean_and_ci_match_scipy_and_cover_the_truth():
    truth, bias, ratings = synthetic_ratings(n_stimuli=200, n_raters=10)
    covered = 0
    for i, row in enumerate(ratings):
        mean, sd, low, high = mean_ci(row)
        sem = stats.sem(row)                    # ddof=1 SD / sqrt(n)
        expected = stats.t.interval(0.95, len(row) - 1, loc=row.mean(), scale=sem)
        assert mean == pytest.approx(row.mean()) and sd == pytest.approx(np.std(row, ddof=1))
        assert (low, high) == pytest.approx(expected)
        covered += low <= truth[i] + bias.mean() <= high
    assert covered / len(ratings) > 0.9          # 95 % intervals around the biased truth


def test_rescale_puts_the_scale_ends_at_plus_minus_one():
    assert rescale([1, 3, 5, 7, 9], 1, 9).tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert rescale([0, 100], 0, 100).tolist() == [-1.0, 1.0]


def test_icc_matches_pingouin_and_recovers_perfect_agreement():
    pingouin = pytest.importorskip("pingouin")
    _, _, ratings = synthetic_ratings()
    long = pd.DataFrame([(t, r, ratings[t, r]) for t in range(ratings.shape[0])
                         for r in range(ratings.shape[1])], columns=["target", "rater", "score"])
    table = pingouin.intraclass_corr(long, "target", "rater", "score").set_index("Type")
    single, average = icc2(ratings)
    # pingouin >= 0.6 names two-way random absolute agreement ICC(A,1)/ICC(A,k), before ICC2/ICC2k
    names = ("ICC(A,1)", "ICC(A,k)") if "ICC(A,1)" in table.index else ("ICC2", "ICC2k")
    assert single == pytest.approx(table.loc[names[0], "ICC"])
    assert average == pytest.approx(table.loc[names[1], "ICC"])
    # no noise and no bias: perfect absolute agreement; a bias lowers absolute agreement only
    truth = np.linspace(1, 9, 7)
    assert icc2(np.repeat(truth[:, None], 4, axis=1)) == pytest.approx((1.0, 1.0))
    assert icc2(truth[:, None] + np.array([0.0, 2.0]))[0] < 0.9


def alpha_interval_by_hand(data: np.ndarray) -> float:
    """Krippendorff's alpha, interval metric, from its definition (coincidence of pairable
    values): 1 - D_o / D_e, written here independently of the krippendorff package."""
    units = [col[~np.isnan(col)] for col in data.T]
    units = [u for u in units if len(u) >= 2]
    values = np.concatenate(units)
    n = len(values)
    observed = sum(((u[:, None] - u[None, :]) ** 2).sum() / (len(u) - 1) for u in units) / n
    expected = ((values[:, None] - values[None, :]) ** 2).sum() / (n * (n - 1))
    return 1.0 - observed / expected


def test_krippendorff_alpha_matches_its_definition_with_missing_ratings():
    _, _, ratings = synthetic_ratings(n_stimuli=15, n_raters=6)
    data = ratings.T.copy()                                   # raters x units
    data[np.random.default_rng(1).random(data.shape) < 0.3] = np.nan
    assert krippendorff_alpha_interval(data) == pytest.approx(alpha_interval_by_hand(data))
    # more noise, less agreement
    _, _, noisy = synthetic_ratings(n_stimuli=15, n_raters=6, noise=3.0)
    assert krippendorff_alpha_interval(noisy.T) < krippendorff_alpha_interval(ratings.T)


def test_unbiased_hit_rate_punishes_a_rater_who_always_says_the_same():
    presented = ["happy"] * 5 + ["sad"] * 5
    always_happy = ["happy"] * 10
    rates = unbiased_hit_rates(presented, always_happy)
    assert rates == {"happy": pytest.approx(5 ** 2 / (5 * 10)), "sad": 0.0}
    assert unbiased_hit_rates(presented, presented) == {"happy": 1.0, "sad": 1.0}


def test_compute_norms_recovers_known_truth_on_the_circumplex():
    truth_v, bias_v, v = synthetic_ratings(n_stimuli=6, n_raters=40, noise=0.5, seed=2)
    truth_a, bias_a, a = synthetic_ratings(n_stimuli=6, n_raters=40, noise=0.5, seed=3)
    ids = [f"s{i}" for i in range(6)]
    stimuli = pd.DataFrame({"stimulus_id": ids, "identity": "id01",
                            "emotion": ["Happy", "Sad"] * 3, "intensity": 1.0,
                            "target_valence": rescale(truth_v, 1, 9),
                            "target_arousal": rescale(truth_a, 1, 9),
                            "achieved_valence": 0.0, "achieved_arousal": 0.0,
                            "rater": "geometric"})
    rows = [{"participant": f"p{r}", "stimulus_id": ids[s], "valence": v[s, r],
             "arousal": a[s, r], "label": ("Happy" if (s + r) % 4 else "Sad"),
             "intensity": np.nan}
            for s in range(6) for r in range(40)]
    norms, summary = compute_norms(pd.DataFrame(rows), stimuli,
                                   {"valence": (1, 9), "arousal": (1, 9)},
                                   dict(zip(ids, stimuli["emotion"])))
    expected_v = rescale(truth_v + bias_v.mean(), 1, 9)
    assert norms["valence_mean"].to_numpy() == pytest.approx(expected_v, abs=0.05)
    assert (norms["n_raters"] == 40).all()
    assert norms["distance_to_target"].to_numpy() == pytest.approx(
        np.hypot(norms["valence_mean"] - norms["target_valence"],
                 norms["arousal_mean"] - norms["target_arousal"]))
    for scale in ("valence", "arousal"):
        reliability = summary["reliability"][scale]
        assert reliability["icc2_k"] > 0.9 and reliability["krippendorff_alpha_interval"] > 0.5
    # hit rate of a Happy stimulus: the share of its raters who said Happy
    labels = pd.DataFrame(rows).query("stimulus_id == 's0'")["label"]
    assert norms.loc[0, "hit_rate"] == pytest.approx((labels == "Happy").mean())
    assert 0 < norms.loc[0, "unbiased_hit_rate"] < norms.loc[0, "hit_rate"]


@pytest.mark.parametrize("named_lists", [True, False])
def test_lists_give_alpha_over_every_rating_and_icc_per_list(named_lists):
    # 3 lists of 4 stimuli, 5 raters per list (one of list 3 skipped a stimulus): each
    # participant rates one list, as design.lists makes them
    truth, bias, ratings = synthetic_ratings(n_stimuli=12, n_raters=15, noise=0.4, seed=5)
    ids = [f"s{i:02d}" for i in range(12)]
    stimuli = pd.DataFrame({"stimulus_id": ids, "identity": "id01", "emotion": "Happy",
                            "intensity": 1.0, "target_valence": 0.0, "target_arousal": 0.0,
                            "achieved_valence": 0.0, "achieved_arousal": 0.0})
    lists = {sid: 1 + i // 4 for i, sid in enumerate(ids)}
    rows = [{"participant": f"p{r:02d}", "stimulus_id": ids[s], "valence": ratings[s, r],
             "arousal": ratings[s, r], "label": None, "intensity": np.nan}
            for r in range(15) for s in range(12) if lists[ids[s]] == 1 + r // 5
            and not (r == 14 and s == 11)]
    _, summary = compute_norms(pd.DataFrame(rows), stimuli,
                               {"valence": (1, 9), "arousal": (1, 9)},
                               lists=lists if named_lists else None)
    reliability = summary["reliability"]["valence"]
    assert reliability["icc2_1"] is None and "per list" in reliability["icc_note"]
    matrix = np.full((15, 12), np.nan)
    for row in rows:
        matrix[int(row["participant"][1:]), ids.index(row["stimulus_id"])] = row["valence"]
    assert reliability["krippendorff_alpha_interval"] == pytest.approx(
        krippendorff_alpha_interval(rescale(matrix, 1, 9)), abs=1e-6)
    by_list = reliability["by_list"]
    if named_lists:        # list 3: its 5 raters over the 3 stimuli they all rated
        assert [(b["list"], b["raters"], b["stimuli"]) for b in by_list] == [
            ("1", 5, 4), ("2", 5, 4), ("3", 5, 3)]
    else:                  # lists found as sets of stimuli rated: the partial one stands alone
        assert sorted((b["raters"], b["stimuli"]) for b in by_list) == [
            (1, 3), (4, 4), (5, 4), (5, 4)]
    expected = icc2(rescale(ratings[0:4, 0:5], 1, 9))
    first = next(b for b in by_list if b["raters"] == 5 and b["stimuli"] == 4)
    assert (first["icc2_1"], first["icc2_k"]) == pytest.approx(expected, abs=1e-6)
    assert all(b["icc2_1"] is None for b in by_list if b["raters"] < 2)


def test_hit_rates_count_another_name_of_the_emotion_as_a_hit():
    # a tidy CSV's labels are compared with the stimulus's emotion: "disgusted" names Disgust,
    # "fearful" names Afraid; "glad" (a different circumplex term) is a miss for Happy
    ids = ["s0", "s1", "s2"]
    stimuli = pd.DataFrame({"stimulus_id": ids, "identity": "id01",
                            "emotion": ["Disgust", "Afraid", "Happy"], "intensity": 1.0,
                            "target_valence": 0.0, "target_arousal": 0.0,
                            "achieved_valence": 0.0, "achieved_arousal": 0.0,
                            "rater": "geometric"})
    answers = {"s0": ["disgusted", "Disgust", "fearful"], "s1": ["fearful", "afraid", "fearful"],
               "s2": ["happiness", "glad", "glad"]}
    rows = [{"participant": f"p{r}", "stimulus_id": sid, "valence": 5, "arousal": 5,
             "label": label, "intensity": np.nan}
            for sid, labels in answers.items() for r, label in enumerate(labels)]
    norms, summary = compute_norms(pd.DataFrame(rows), stimuli,
                                   {"valence": (1, 9), "arousal": (1, 9)},
                                   dict(zip(ids, stimuli["emotion"])))
    assert norms.set_index("stimulus_id")["hit_rate"].to_dict() == pytest.approx(
        {"s0": 2 / 3, "s1": 1.0, "s2": 1 / 3})
    by_emotion = {row["emotion"]: row for row in summary["by_emotion"]}
    # Hu of Afraid: 3 hits of 3 presented, "fear" chosen 4 times -> 9 / 12
    assert by_emotion["Afraid"]["unbiased_hit_rate"] == pytest.approx(9 / 12)


# -- a real build and PsychoPy-format data files ------------------------------------------------
@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    pytest.importorskip("psychopy")
    import stimgen
    root = tmp_path_factory.mktemp("norms")
    (root / "protocol.yaml").write_text(PROTOCOL, encoding="utf-8")
    return stimgen.build(stimgen.load_protocol(root / "protocol.yaml"), out=root / "build",
                         progress=False).out


def psychopy_file(folder: Path, build: Path, participant: str, group: str = "g01", *,
                  rate=lambda i: (5, 5), label="1", catch_key="space", exp="norming_pilot",
                  drop_last=0, date="2026-01-01_10h00") -> Path:
    """A data CSV as PsychoPy writes it for this experiment: a first non-trial row, one row per
    trial with the conditions, responses and loop columns, the start-dialog columns on every row."""
    design = pd.read_csv(build / "experiment" / "design.csv", dtype=str, keep_default_na=False)
    trials = design[design["group"] == group].drop(columns="group")
    rows = [{}]
    for i, trial in enumerate(trials.to_dict("records")[:len(trials) - drop_last]):
        v, a = rate(i)
        rows.append({**trial, "thisN": i, "trials.thisN": i, "valence_slider.response": v,
                     "valence_slider.rt": 1.2, "arousal_slider.response": a,
                     "arousal_slider.rt": 1.1, "label_keys.keys": label,
                     "catch_keys.keys": catch_key if trial["is_catch"] == "1" else ""})
    frame = pd.DataFrame(rows).assign(participant=participant, session="001", group=group,
                                      date=date, expName=exp, psychopyVersion="2026.2.5")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{participant}_{exp}_{date}.csv"
    frame.to_csv(path, index=False)
    return path


def read(build: Path, paths, **kwargs):
    folder = read_build_folder(build)
    return read_responses(paths, experiment_of(folder), **kwargs)


def test_psychopy_files_are_read_and_bad_sessions_excluded(build, tmp_path):
    data = tmp_path / "data"
    good = psychopy_file(data, build, "p1", "g01")
    psychopy_file(data, build, "p2", "g02", catch_key="")              # missed the check
    psychopy_file(data, build, "p3", "g03", drop_last=2)               # quit early
    psychopy_file(data, build, "p1", "g02", date="2026-01-02_10h00")   # p1 again, later
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in data.iterdir()}

    responses = read(build, [data])

    assert set(responses.table["participant"]) == {"p1"}
    reasons = {(e["participant"], e["reason"].split(":")[0].split(" (")[0])
               for e in responses.excluded}
    assert reasons == {("p2", "missed 1 of 1 attention checks"),
                       ("p3", "incomplete session"), ("p1", "duplicate participant id")}
    assert str(good) in {s["file"] for s in responses.sessions}
    assert set(responses.table["label"]) == {"happy"}          # key 1 -> the first label
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in data.iterdir()}
    assert after == before                                      # raw data never modified


def test_bad_cells_are_warned_about_by_file_and_row_and_never_evaluated(build, tmp_path):
    values = {0: ("=cmd|' /C calc'!A0", 5), 1: (12, 5), 2: ("abc", 5)}
    path = psychopy_file(tmp_path, build, "p1", rate=lambda i: values.get(i, (5, 5)))
    responses = read(build, [path])
    text = "\n".join(responses.warnings)
    assert f"{path}:3: column valence_slider.response holds formula-like text" in text
    assert (f"1 value outside the scale 1-9; not used (first: {path}:4 column "
            "valence_slider.response value 12)") in text
    assert f"{path}:5: column valence_slider.response is not a number ('abc')" in text
    assert responses.table["valence"].isna().sum() == 3
    assert responses.table["arousal"].notna().all()


def test_unusable_input_is_refused_with_the_file_named(build, tmp_path):
    other = psychopy_file(tmp_path / "a", build, "p1", exp="another_study")
    with pytest.raises(NormsError, match="another_study"):
        read(build, [other])
    unrelated = tmp_path / "unrelated.csv"
    unrelated.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(NormsError, match="neither a PsychoPy data file"):
        read(build, [unrelated])
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(NormsError, match="no usable rating.*\n.*empty file"):
        read(build, [empty])
    foreign = tmp_path / "foreign.csv"
    pd.DataFrame({"stim_id": ["x1", "x2"], "participant": "p", "expName": "norming_pilot"}
                 ).to_csv(foreign, index=False)
    with pytest.raises(NormsError, match="none of its stimuli"):
        read(build, [foreign])
    result = CliRunner().invoke(main, ["norms", str(build), str(unrelated)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_tidy_csv_by_file_name_with_scale_option(build, tmp_path):
    stimuli = read_build_folder(build).stimuli
    rows = []
    for p in range(4):
        for i, (sid, file) in enumerate(zip(stimuli["stimulus_id"], stimuli["file"])):
            rows.append({"participant": f"q{p}", "stimulus": file.split("/")[-1] if i % 2 else sid,
                         "valence": 50 + 10 * p, "arousal": 100, "label": "happy"})
    rows.append(dict(rows[0]))                           # a duplicated row
    rows.append({**rows[0], "stimulus": "nope.png"})     # an unknown stimulus
    path = tmp_path / "tidy.csv"
    pd.DataFrame(rows).to_csv(path, index=False)

    result = CliRunner().invoke(main, ["norms", str(build), str(path), "--scale", "0", "100"])

    assert result.exit_code == 0, result.output
    assert "appears twice" in result.output and "'nope.png'" in result.output
    norms = pd.read_csv(build / NORMS_TSV, sep="\t")
    assert len(norms) == len(stimuli) and (norms["n_raters"] == 4).all()
    assert norms["valence_mean"].to_numpy() == pytest.approx(0.3)   # mean 65 on 0-100
    assert norms["arousal_mean"].to_numpy() == pytest.approx(1.0)
    happy = norms[norms["emotion"] == "Happy"]
    assert (happy["hit_rate"] == 1.0).all() and (norms.loc[norms["emotion"] != "Happy",
                                                           "hit_rate"] == 0.0).all()
    summary = json.loads((build / NORMS_SUMMARY_JSON).read_text(encoding="utf-8"))
    assert summary["participants"]["kept"] == 4
    assert summary["reliability"]["valence"]["icc2_1"] is not None


# -- the full loop ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(XVFB_RUN is None and not os.environ.get("CI"),
                    reason="xvfb-run not installed (run make system-deps)")
def test_full_loop_simulated_participants_to_report(build):
    experiment = build / "experiment"
    runs = [subprocess.Popen(
        [XVFB_RUN, "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "run_simulated.py",
         "--group", group, "--participant", f"sim_{group}"],
        cwd=experiment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}) for group in ("g01", "g02", "g03")]
    for run in runs:
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0, out[-2000:] + err[-2000:]

    result = CliRunner().invoke(main, ["norms", str(build), str(experiment / "data")])

    assert result.exit_code == 0, result.output
    assert "3 participant(s) kept, 0 excluded" in result.output
    norms = pd.read_csv(build / NORMS_TSV, sep="\t")
    stimuli = read_build_folder(build).stimuli
    assert sorted(norms["stimulus_id"]) == sorted(stimuli["stimulus_id"])
    assert (norms["n_raters"] == 3).all()
    assert norms[["valence_mean", "arousal_mean"]].abs().le(1.0).all().all()
    assert norms["hit_rate"].between(0, 1).all()
    # the numbers come from the participants' own data files, recomputed here
    frames = [pd.read_csv(f) for f in sorted((experiment / "data").glob("*.csv"))]
    trials = pd.concat(frames).dropna(subset=["stim_id"])
    first = norms.iloc[0]
    raw = trials.loc[trials["stim_id"] == first["stimulus_id"], "valence_slider.response"]
    assert first["valence_mean"] == pytest.approx(((raw - 5) / 4).mean(), abs=1e-5)
    summary = json.loads((build / NORMS_SUMMARY_JSON).read_text(encoding="utf-8"))
    assert summary["reliability"]["valence"]["icc2_1"] is not None      # everyone rated all
    report = (build / "report.html").read_text(encoding="utf-8")
    assert 'id="human-norms"' in report and "Krippendorff" in report
    assert (build / "report_assets" / "figures" / "norms_circumplex.svg").is_file()


# -- summarised warnings --------------------------------------------------------------------------
def tidy_ratings(build: Path, path: Path, participants=6, value=lambda p, i: (5, 5),
                 extra_stimuli=()) -> Path:
    rows = [{"participant": f"q{p}", "stimulus": sid, "valence": value(p, i)[0],
             "arousal": value(p, i)[1]}
            for p in range(participants)
            for i, sid in enumerate([*read_build_folder(build).stimuli["stimulus_id"],
                                     *extra_stimuli])]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_values_outside_the_scale_are_one_warning_and_most_outside_name_the_range(build,
                                                                                  tmp_path):
    # 6 participants x 6 stimuli; participant q0 typed 0-100 values on two stimuli
    few = tidy_ratings(build, tmp_path / "few.csv",
                       value=lambda p, i: (50, 60) if p == 0 and i < 2 else (3, 7))
    result = CliRunner().invoke(main, ["norms", str(build), str(few)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "outside the scale" in line]
    assert lines == [f"warning: 4 values outside the scale 1-9; not used (first: {few}:2 "
                     "column valence value 50)"]
    # every value on a 0-100 slider, read with the default 1-9
    percent = tidy_ratings(build, tmp_path / "percent.csv",
                           value=lambda p, i: (10 * i + p, 100 - 10 * i - p))
    result = CliRunner().invoke(main, ["norms", str(build), str(percent)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "outside the scale 1-9" in result.output and "hint:" in result.output
    values = [10 * i + p for p in range(6) for i in range(6)] + \
        [100 - 10 * i - p for p in range(6) for i in range(6)]
    assert f"--scale {min(values)} {max(values)}" in result.output
    result = CliRunner().invoke(main, ["norms", str(build), str(percent), "--scale", "0", "100"])
    assert result.exit_code == 0 and "outside the scale" not in result.output, result.output


def test_rows_of_stimuli_not_in_the_build_are_one_warning(build, tmp_path):
    """Norming a subset with the whole study's data: the other stimuli's rows are counted in
    one line naming the first, not one line each."""
    others = [f"id09_other_{n}" for n in range(5)]
    path = tidy_ratings(build, tmp_path / "study.csv", extra_stimuli=others)
    result = CliRunner().invoke(main, ["norms", str(build), str(path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "not in this build" in line]
    assert lines == [f"warning: 30 rows name stimuli not in this build; not used (first: "
                     f"{path}:8 'id09_other_0')"]
