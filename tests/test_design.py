"""Tests of stimgen.design: square properties, run-length orders and per-group trial plans."""
from __future__ import annotations

import builtins
import itertools
import json
import keyword
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stimgen.design import (CATEGORIZATION_COLUMNS, PASSIVE_COLUMNS, TRIAL_COLUMNS,
                            TYPICAL_CATCH_S, TYPICAL_CHOICE_S, TYPICAL_SLIDER_S,
                            constrained_shuffle, estimate_session, group_for_participant,
                            group_name, group_rng, latin_square, longest_run, plan_design,
                            trial_columns, williams_square)
from stimgen.errors import DesignError, StimgenError
from stimgen.plan import plan_targets
from stimgen.protocol.experiment import ExperimentSpec
from stimgen.protocol.models import Targets


def make_stimuli(identities=("id01", "id02", "id03"),
                 emotions=("circumplex:Happy", "circumplex:Sad", "Afraid", "Calm"),
                 intensities=(0.5, 1.0), neutral=False) -> pd.DataFrame:
    """A stimuli.tsv-like table with the build contract's columns and stable ids."""
    targets = plan_targets(Targets(emotions=list(emotions), intensities=list(intensities),
                                   neutral=neutral))
    rows = []
    for identity in identities:
        for t in targets:
            sid = t.stimulus_id(identity)
            rows.append(dict(stimulus_id=sid, file=f"stimuli/{sid}.png", identity=identity,
                             target_kind=t.kind, emotion=t.emotion, angle=t.angle,
                             intensity=t.intensity, target_valence=t.valence,
                             target_arousal=t.arousal, achieved_valence=t.valence * 0.9,
                             achieved_arousal=t.arousal * 0.9,
                             out_of_tolerance=(sid.endswith("i050") and identity == "id01")))
    return pd.DataFrame(rows)


def spec(**section) -> ExperimentSpec:
    return ExperimentSpec.model_validate(section)


def main_trials(table: pd.DataFrame) -> pd.DataFrame:
    return table[~table["is_practice"]]


# -- squares ---------------------------------------------------------------------------------
@given(st.integers(1, 24))
def test_latin_square_is_latin(n):
    square = latin_square(n)
    assert len(square) == n
    for line in square + [list(col) for col in zip(*square)]:
        assert sorted(line) == list(range(n))


@given(st.integers(1, 24))
def test_williams_square_is_balanced_for_carry_over(n):
    square = williams_square(n)
    assert len(square) == (2 * n if n % 2 and n > 1 else n)
    for row in square:
        assert sorted(row) == list(range(n))
    for half in (square[:n], square[n:] or square[:n]):
        for col in zip(*half):  # each n-row half is a Latin square
            assert sorted(col) == list(range(n))
    pairs = Counter((row[j], row[j + 1]) for row in square for j in range(n - 1))
    expected = 1 if n % 2 == 0 else 2
    assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert set(pairs.values()) <= {expected}


def test_williams_square_first_row_follows_the_construction():
    assert williams_square(6)[0] == [0, 1, 5, 2, 4, 3]
    assert williams_square(6)[2] == [2, 3, 1, 4, 0, 5]
    assert williams_square(3)[3:] == [[2, 1, 0], [0, 2, 1], [1, 0, 2]]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_squares_reject_bad_orders(bad):
    with pytest.raises(ValueError, match="number of conditions"):
        williams_square(bad)
    with pytest.raises(ValueError, match="number of conditions"):
        latin_square(bad)


# -- run-length constrained shuffles ---------------------------------------------------------
def _runs_ok(order, keys, limits):
    return all(longest_run([keys[k][i] for i in order]) <= cap for k, cap in limits.items())


def test_longest_run():
    assert longest_run([]) == 0
    assert longest_run("abbbcc") == 3
    assert longest_run([1.0, 1.0]) == 2


@settings(max_examples=150, deadline=None)
@given(counts=st.lists(st.integers(1, 12), min_size=1, max_size=6), cap=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1))
def test_single_constraint_is_met_whenever_it_can_be(counts, cap, seed):
    values = [v for v, c in enumerate(counts) for _ in range(c)]
    keys = {"emotion": values}
    feasible = max(counts) <= cap * (len(values) - max(counts) + 1)
    rng = np.random.default_rng(seed)
    if not feasible:
        with pytest.raises(StimgenError, match="max_run.emotion"):
            constrained_shuffle(range(len(values)), keys, {"emotion": cap}, rng)
        return
    order = constrained_shuffle(range(len(values)), keys, {"emotion": cap}, rng)
    assert sorted(order) == list(range(len(values)))
    assert longest_run([values[i] for i in order]) <= cap


@settings(max_examples=100, deadline=None)
@given(n_emotions=st.integers(2, 8), n_identities=st.integers(2, 5), reps=st.integers(1, 3),
       emotion_cap=st.integers(1, 3), identity_cap=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))
def test_two_constraints_hold_or_fail_loudly(n_emotions, n_identities, reps, emotion_cap,
                                             identity_cap, seed):
    grid = list(itertools.product(range(n_emotions), range(n_identities))) * reps
    keys = {"emotion": [e for e, _ in grid], "identity": [i for _, i in grid]}
    limits = {"emotion": emotion_cap, "identity": identity_cap}
    try:
        order = constrained_shuffle(range(len(grid)), keys, limits, np.random.default_rng(seed))
    except StimgenError as error:
        assert "max_run" in error.render()
        return
    assert sorted(order) == list(range(len(grid)))
    assert _runs_ok(order, keys, limits)


@settings(max_examples=80, deadline=None)
@given(items=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=2, max_size=7),
       emotion_cap=st.integers(1, 2), identity_cap=st.integers(1, 2),
       seed=st.integers(0, 2**32 - 1))
def test_an_order_is_found_exactly_when_one_exists(items, emotion_cap, identity_cap, seed):
    keys = {"emotion": [e for e, _ in items], "identity": [i for _, i in items]}
    limits = {"emotion": emotion_cap, "identity": identity_cap}
    exists = any(_runs_ok(p, keys, limits)
                 for p in set(itertools.permutations(range(len(items)))))
    try:
        order = constrained_shuffle(range(len(items)), keys, limits,
                                    np.random.default_rng(seed))
    except StimgenError:
        assert not exists
        return
    assert _runs_ok(order, keys, limits)


def test_balanced_factorial_orders_always_succeed():
    # 28 emotions x 4 identities x 4 intensities, the demo: loose limits must never fail.
    grid = list(itertools.product(range(28), range(4), range(4)))
    keys = {"emotion": [g[0] for g in grid], "identity": [g[1] for g in grid]}
    limits = {"emotion": 2, "identity": 3}
    for seed in range(20):
        order = constrained_shuffle(range(len(grid)), keys, limits, group_rng(seed, 0))
        assert _runs_ok(order, keys, limits)


def test_shuffle_is_deterministic_and_seed_dependent():
    keys = {"emotion": list("aabbccddee" * 3)}
    first = constrained_shuffle(range(30), keys, {"emotion": 1}, group_rng(7, 0))
    again = constrained_shuffle(range(30), keys, {"emotion": 1}, group_rng(7, 0))
    other = constrained_shuffle(range(30), keys, {"emotion": 1}, group_rng(7, 1))
    assert first == again
    assert first != other


def test_unsatisfiable_limit_names_the_constraint_and_the_value():
    keys = {"identity": ["id01"] * 5 + ["id02"]}
    with pytest.raises(DesignError) as raised:
        constrained_shuffle(range(6), keys, {"identity": 2}, np.random.default_rng(0))
    assert raised.value.field == ("experiment", "design", "max_run", "identity")
    text = raised.value.render()
    assert text.startswith("experiment.design.max_run.identity: at most 2 consecutive")
    assert "'id01'" in text and "set experiment.design.max_run.identity to 3" in text


def test_unconstrained_shuffle_is_a_permutation_and_bad_arguments_are_bugs():
    rng = np.random.default_rng(0)
    assert sorted(constrained_shuffle("abcde", {}, {}, rng)) == list("abcde")
    with pytest.raises(ValueError, match="no such attribute"):
        constrained_shuffle(range(3), {}, {"emotion": 1}, rng)
    with pytest.raises(ValueError, match="3 items"):
        constrained_shuffle(range(3), {"emotion": "ab"}, {"emotion": 1}, rng)


# -- groups ----------------------------------------------------------------------------------
def test_group_names_and_participant_rule():
    assert [group_name(i, 3) for i in range(3)] == ["g01", "g02", "g03"]
    assert group_name(99, 100) == "g100"
    assert [group_for_participant(p, 3) for p in (1, 2, 3, 4, 7)] == \
        ["g01", "g02", "g03", "g01", "g01"]
    with pytest.raises(ValueError):
        group_for_participant(0, 3)


# -- trial columns are safe in PsychoPy --------------------------------------------------------
# Names the PsychoPy Builder reserves (experiment NameSpace: builder variables, the numpy
# names its scripts import, Python keywords and builtins) and JavaScript globals a PsychoJS
# conditions column would shadow.
PSYCHOPY_BUILDER_NAMES = {
    "KeyResponse", "keyboard", "buttons", "continueRoutine", "expInfo", "expName", "thisExp",
    "filename", "logFile", "paramName", "t", "frameN", "currentLoop", "dlg", "_thisDir",
    "endExpNow", "globalClock", "routineTimer", "frameDur", "theseKeys", "win", "x", "y",
    "level", "component", "thisComponent", "trials", "thisN", "image", "core", "data",
    "event", "visual", "gui", "sound", "os", "sys", "np", "psychopy", "logging", "clock",
    "sin", "cos", "tan", "log", "log10", "pi", "average", "sqrt", "std", "deg2rad", "rad2deg",
    "linspace", "asarray", "random", "randint", "normal", "shuffle", "randchoice",
}
JS_GLOBALS = {"name", "status", "length", "event", "screen", "history", "location", "origin",
              "top", "parent", "self", "frames", "closed", "open", "window", "document",
              "Math", "Object", "Array", "String", "Number", "undefined", "NaN"}


def test_trial_columns_avoid_reserved_names():
    reserved = PSYCHOPY_BUILDER_NAMES | JS_GLOBALS | set(keyword.kwlist) | set(dir(builtins))
    for column in TRIAL_COLUMNS + CATEGORIZATION_COLUMNS + PASSIVE_COLUMNS:
        assert column.isidentifier() and column not in reserved, column
        assert not column.startswith(("this", "these", "continue")), column
        assert not column.endswith("Clock") and "component" not in column.lower(), column


def test_trial_columns_pass_psychopys_own_namespace_check():
    experiment = pytest.importorskip("psychopy.experiment")
    namespace = experiment.Experiment().namespace
    for column in trial_columns("categorization") + PASSIVE_COLUMNS:
        assert namespace.exists(column) is None, (column, namespace.exists(column))
        assert namespace.isPossiblyDerivable(column) is None, column


# -- plan_design: random -----------------------------------------------------------------------
def test_random_design_orders_every_stimulus_per_group_within_run_limits():
    stimuli = make_stimuli(neutral=True)
    design = plan_design(spec(design={"type": "random", "participants": 5, "repetitions": 2}),
                         stimuli, seed=3)
    assert design.groups == ["g01", "g02", "g03", "g04", "g05"]
    assert design.columns == TRIAL_COLUMNS
    orders = []
    for name, table in design.trials.items():
        assert list(table.columns) == list(TRIAL_COLUMNS)
        assert table["position"].tolist() == list(range(1, len(table) + 1))
        assert Counter(table["stim_id"]) == {sid: 2 for sid in stimuli["stimulus_id"]}
        assert longest_run(table["emotion"].tolist()) <= 2
        assert longest_run(table["identity"].tolist()) <= 3
        assert set(table["block"]) == {1} and not table["break_after"].any()
        orders.append(tuple(table["stim_id"]))
    assert len(set(orders)) == len(orders)
    assert design.summary["main_trials_per_group"] == [2 * len(stimuli)]
    assert "((p - 1) mod 5) + 1" in design.rule


def test_same_seed_same_design_other_seed_other_orders():
    stimuli = make_stimuli()
    section = spec(design={"type": "random", "participants": 3}, practice={"trials": 2})
    first, again = plan_design(section, stimuli, 11), plan_design(section, stimuli, 11)
    other = plan_design(section, stimuli, 12)
    pd.testing.assert_frame_equal(first.table, again.table)
    assert first.summary == again.summary
    assert not first.table["stim_id"].equals(other.table["stim_id"])


def test_trial_rows_carry_the_stimulus_columns():
    stimuli = make_stimuli(neutral=True)
    table = plan_design(spec(), stimuli, 0).trials["g01"]
    merged = table.merge(stimuli, left_on="stim_id", right_on="stimulus_id")
    assert (merged["stim_file"] == merged["file"]).all()
    for column in ("identity", "emotion", "intensity", "target_valence", "achieved_arousal"):
        assert (merged[f"{column}_x"].astype(str) == merged[f"{column}_y"].astype(str)).all()
    assert table.loc[table["emotion"] == "neutral", "angle"].isna().all()


def test_design_table_stacks_groups_for_auditing():
    design = plan_design(spec(design={"type": "random", "participants": 2}), make_stimuli(), 0)
    assert list(design.table.columns) == ["group", *TRIAL_COLUMNS]
    assert design.table["group"].value_counts().to_dict() == {"g01": 24, "g02": 24}
    g02 = design.table[design.table["group"] == "g02"].drop(columns="group")
    pd.testing.assert_frame_equal(g02.reset_index(drop=True), design.trials["g02"])


def test_breaks_every_n_trials_but_not_after_the_last():
    design = plan_design(spec(breaks={"every": 10}), make_stimuli(), 0)  # 24 trials
    table = design.trials["g01"]
    assert table.index[table["break_after"]].tolist() == [9, 19]
    design = plan_design(spec(breaks={"every": 12}), make_stimuli(), 0)
    assert design.trials["g01"]["break_after"].sum() == 1


# -- plan_design: blocked ----------------------------------------------------------------------
def test_blocked_design_follows_williams_rows_and_balances_carry_over():
    stimuli = make_stimuli()  # 4 emotions -> 4 groups
    design = plan_design(spec(design={"type": "blocked", "factor": "emotion"}), stimuli, 5)
    assert len(design.groups) == 4
    levels = design.summary["levels"]
    assert levels == ["Happy", "Afraid", "Sad", "Calm"]  # by circumplex angle
    precedes = Counter()
    for g, (name, table) in enumerate(design.trials.items()):
        blocks = table.groupby("block", sort=True)
        labels = [b["block_label"].iloc[0] for _, b in blocks]
        assert labels == [levels[c] for c in williams_square(4)[g]]
        for _, block in blocks:
            assert block["emotion"].nunique() == 1
            assert longest_run(block["identity"].tolist()) <= 3
        precedes.update(zip(labels, labels[1:]))
        ends = table.index[table["break_after"]].tolist()
        assert ends == [5, 11, 17]  # between the four blocks of six trials
    assert set(precedes.values()) == {1} and len(precedes) == 12
    assert design.summary["block_orders"]["g02"] == [levels[c] for c in williams_square(4)[1]]


def test_blocked_design_with_an_odd_number_of_levels_uses_2n_groups():
    stimuli = make_stimuli(intensities=(0.25, 0.5, 1.0))
    design = plan_design(spec(design={"type": "blocked", "factor": "intensity"}), stimuli, 1)
    assert len(design.groups) == 6
    with pytest.raises(StimgenError, match="multiple of 6"):
        plan_design(spec(design={"type": "blocked", "factor": "intensity", "groups": 3}),
                    stimuli, 1)


def test_blocking_by_intensity_keeps_the_neutral_block_orderable():
    stimuli = make_stimuli(neutral=True)  # the neutral block has one emotion only
    design = plan_design(spec(design={"type": "blocked", "factor": "intensity"}), stimuli, 1)
    assert "0" in design.summary["levels"]


# -- plan_design: latin-square ------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(n_identities=st.integers(2, 6), seed=st.integers(0, 1000),
       lists_per_condition=st.integers(1, 2))
def test_latin_square_lists_balance_identity_by_condition(n_identities, seed,
                                                          lists_per_condition):
    identities = [f"id{i:02d}" for i in range(1, n_identities + 1)]
    stimuli = make_stimuli(identities=identities, intensities=(0.25, 0.5, 1.0), neutral=True)
    groups = 3 * lists_per_condition
    design = plan_design(spec(design={"type": "latin-square", "conditions": "intensity",
                                      "groups": groups, "max_run": {"identity": None}}),
                         stimuli, seed)
    pairs = Counter()
    for table in design.trials.values():
        rotated = table[table["target_kind"] != "neutral"]
        per_identity = rotated.groupby("identity")["intensity"].unique()
        assert all(len(levels) == 1 for levels in per_identity)  # one condition per identity
        assert sorted(per_identity.index) == identities
        pairs.update((ident, levels[0]) for ident, levels in per_identity.items())
        assert (table["target_kind"] == "neutral").sum() == n_identities  # shown in every list
        assert longest_run(table["emotion"].tolist()) <= 2
    assert len(pairs) == 3 * n_identities
    assert set(pairs.values()) == {lists_per_condition}


def test_latin_square_rotates_identity_i_to_condition_i_plus_g():
    design = plan_design(spec(design={"type": "latin-square", "conditions": "intensity"}),
                         make_stimuli(intensities=(0.5, 1.0)), 0)
    assert design.summary["assignment"] == {
        "g01": {"id01": "0.5", "id02": "1", "id03": "0.5"},
        "g02": {"id01": "1", "id02": "0.5", "id03": "1"}}
    assert "unequal" in design.summary["note"]


def test_latin_square_validation():
    stimuli = make_stimuli(intensities=(0.5, 1.0))
    with pytest.raises(StimgenError, match="multiple of 2"):
        plan_design(spec(design={"type": "latin-square", "groups": 3}), stimuli, 0)
    with pytest.raises(StimgenError, match="at least 2 intensity conditions"):
        plan_design(spec(design={"type": "latin-square"}), make_stimuli(intensities=(1.0,)), 0)
    holey = stimuli[~((stimuli["identity"] == "id02") & (stimuli["intensity"] == 1.0))]
    with pytest.raises(StimgenError, match="'id02' has no stimulus with intensity 1"):
        plan_design(spec(design={"type": "latin-square"}), holey, 0)


# -- tasks ---------------------------------------------------------------------------------------
def test_categorization_records_the_correct_key_and_label():
    section = spec(task={"type": "categorization", "choices": [
        {"label": "positive", "key": "f", "emotions": ["happy", "calm"]},
        {"label": "negative", "key": "j", "emotions": ["Sad", "afraid"]}]})
    table = plan_design(section, make_stimuli(), 0).trials["g01"]
    assert list(table.columns) == list(trial_columns("categorization"))
    positive = table["emotion"].isin(["Happy", "Calm"])
    assert (table.loc[positive, "correct_key"] == "f").all()
    assert (table.loc[~positive, "correct_label"] == "negative").all()


def test_categorization_default_choices_are_the_emotions_in_angle_order():
    design = plan_design(spec(task={"type": "categorization"}), make_stimuli(neutral=True), 0)
    answers = design.trials["g01"].drop_duplicates("emotion").set_index("emotion")
    assert answers.loc["Happy", "correct_key"] == "1"
    assert answers.loc["neutral", "correct_key"] == "5"
    assert answers.loc["Sad", "correct_label"] == "Sad"


def test_categorization_needs_a_choice_for_every_emotion():
    section = spec(task={"type": "categorization", "choices": ["Happy", "Sad"]})
    with pytest.raises(StimgenError, match="no choice is correct for emotion.*Afraid, Calm"):
        plan_design(section, make_stimuli(), 0)
    with pytest.raises(StimgenError, match="correct for two choices"):
        plan_design(spec(task={"type": "categorization", "choices": [
            {"label": "a", "emotions": ["Happy", "Sad"]}, {"label": "b", "emotions": ["sad"]}]}),
            make_stimuli(), 0)
    many = make_stimuli(emotions=("circumplex:Happy", "Delighted", "Excited", "Astonished",
                                  "Aroused", "Tense", "Alarmed", "circumplex:Angry", "Afraid",
                                  "Annoyed", "circumplex:Sad"))
    with pytest.raises(StimgenError, match="needs explicit choices"):
        plan_design(spec(task={"type": "categorization"}), many, 0)


def test_choice_labels_match_other_names_of_the_target_emotion():
    # "fearful" answers "Afraid" faces, "happiness" "Happy" ones (the circumplex term),
    # "disgusted" "Disgust" ones
    stimuli = make_stimuli(emotions=("circumplex:Happy", "Afraid", "Disgust", "Sadness"))
    section = spec(task={"type": "categorization",
                         "choices": ["happiness", "fearful", "disgusted", "sad"]})
    table = plan_design(section, stimuli, 0).trials["g01"]
    answers = table.drop_duplicates("emotion").set_index("emotion")["correct_label"]
    assert answers.to_dict() == {"Happy": "happiness", "Afraid": "fearful",
                                 "Disgust": "disgusted", "Sadness": "sad"}
    # two names of one emotion are one answer, so two choices cannot both claim it
    with pytest.raises(StimgenError, match="correct for two choices"):
        plan_design(spec(task={"type": "categorization",
                               "choices": ["happy", "happiness", "fearful", "disgust", "sad"]}),
                    stimuli, 0)
    # selecting stimuli by another name of their emotion works too
    picked = plan_design(spec(stimuli={"emotions": ["fearful", "happiness"]}), stimuli, 0)
    assert set(main_trials(picked.trials["g01"])["emotion"]) == {"Afraid", "Happy"}


def test_default_choices_give_two_names_of_one_emotion_one_option():
    stimuli = make_stimuli(emotions=("circumplex:Happy", "Happiness", "circumplex:Sad"))
    table = plan_design(spec(task={"type": "categorization"}), stimuli, 0).trials["g01"]
    answers = table.drop_duplicates("emotion").set_index("emotion")
    assert answers.loc["Happy", "correct_key"] == answers.loc["Happiness", "correct_key"]
    assert table["correct_key"].nunique() == 2


def test_a_prefix_selects_one_vocabulary_a_plain_word_both():
    stimuli = make_stimuli(emotions=("circumplex:Happy", "Happiness", "circumplex:Sad"))

    def selected(*names):
        design = plan_design(spec(stimuli={"emotions": list(names)}), stimuli, 0)
        return set(main_trials(design.trials["g01"])["emotion"])

    assert selected("happy") == {"Happy", "Happiness"}         # answers either face
    assert selected("circumplex:happy") == {"Happy"}
    assert selected("basic:happy", "circumplex:sad") == {"Happiness", "Sad"}
    with pytest.raises(DesignError) as raised:
        selected("circumplex:happy", "basic:sad")
    assert raised.value.field == ("experiment", "stimuli", "emotions", 1)
    assert "'basic:sad' (Sadness) is not among the built stimuli" in raised.value.render()
    # a choice with a prefix is answered like the plain word
    section = spec(task={"type": "categorization", "choices": ["circumplex:happy", "sad"]})
    table = plan_design(section, stimuli, 0).trials["g01"]
    answers = table.drop_duplicates("emotion").set_index("emotion")["correct_label"]
    assert answers.to_dict() == {"Happy": "circumplex:happy", "Happiness": "circumplex:happy",
                                 "Sad": "sad"}


def test_passive_catch_trials_are_marked_on_main_trials():
    section = spec(task={"type": "passive", "catch": {"trials": 5}}, practice={"trials": 3})
    design = plan_design(section, make_stimuli(), 2)
    for table in design.trials.values():
        assert list(table.columns) == list(trial_columns("passive"))
        assert table["is_catch"].sum() == 5
        assert not table.loc[table["is_practice"], "is_catch"].any()
    with pytest.raises(StimgenError, match="only 24 main trials"):
        plan_design(spec(task={"type": "passive", "catch": {"trials": 25}}), make_stimuli(), 0)


# -- practice and selection ----------------------------------------------------------------------
def test_practice_from_a_reserved_identity_comes_first():
    with pytest.raises(StimgenError, match="did you mean 'id03'"):
        plan_design(spec(practice={"trials": 4, "identities": ["ID03"]}), make_stimuli(), 0)
    section = spec(practice={"trials": 4, "identities": ["id03"]})
    design = plan_design(section, make_stimuli(), 0)
    for table in design.trials.values():
        practice, main = table[table["is_practice"]], main_trials(table)
        assert table.index[table["is_practice"]].tolist() == [0, 1, 2, 3]
        assert set(practice["identity"]) == {"id03"} and "id03" not in set(main["identity"])
        assert (practice["block"] == 0).all() and (main["block"] == 1).all()
        assert practice["stim_id"].is_unique
    assert design.summary["practice_source"] == "unused"


def test_practice_falls_back_to_repeats_or_fails_when_asked_for_unused():
    stimuli = make_stimuli()
    design = plan_design(spec(practice={"trials": 30}), stimuli, 0)
    assert design.summary["practice_source"] == "repeat"
    practice = design.trials["g01"].query("is_practice")
    assert len(practice) == 30 and set(practice["stim_id"]) == set(stimuli["stimulus_id"])
    with pytest.raises(StimgenError, match="only 0 stimuli are not in the main trials"):
        plan_design(spec(practice={"trials": 2, "source": "unused"}), stimuli, 0)


def test_selection_filters_and_names_unknown_values():
    stimuli = make_stimuli(neutral=True)
    section = spec(stimuli={"emotions": ["happy", "SAD"], "intensities": [1.0],
                            "include_neutral": False, "exclude_out_of_tolerance": True})
    table = plan_design(section, stimuli, 0).trials["g01"]
    assert set(table["emotion"]) == {"Happy", "Sad"} and set(table["intensity"]) == {1.0}
    with pytest.raises(StimgenError) as raised:
        plan_design(spec(stimuli={"emotions": ["hapy"]}), stimuli, 0)
    assert "'hapy' is not among the built stimuli" in raised.value.render()
    assert "did you mean 'Happy'" in raised.value.render()
    with pytest.raises(DesignError, match=r"intensities.0: intensity 0.75 is not among"):
        plan_design(spec(stimuli={"intensities": [0.75]}), stimuli, 0)
    tolerated = plan_design(spec(stimuli={"exclude_out_of_tolerance": True}), stimuli, 0)
    assert not tolerated.table["stim_id"].str.match(r"id01_.*_i050").any()


def test_stimuli_table_must_have_the_contract_columns():
    with pytest.raises(StimgenError, match="lacks column.*achieved_valence"):
        plan_design(spec(), make_stimuli().drop(columns="achieved_valence"), 0)


def test_demo_sized_design_is_complete():
    stimuli = make_stimuli(identities=("id01", "id02", "id03", "id04"), emotions=(
        "circumplex:Happy", "Delighted", "Excited", "Astonished", "Aroused", "Tense", "Alarmed"),
        intensities=(0.25, 0.5, 0.75, 1.0), neutral=True)
    design = plan_design(spec(), stimuli, 2024)
    assert len(design.groups) == 24
    assert design.summary["longest_runs"]["emotion"] <= 2
    assert design.summary["longest_runs"]["identity"] <= 3


@pytest.mark.parametrize("section", [
    {"design": {"type": "random", "participants": 2}, "practice": {"trials": 2}},
    {"design": {"type": "blocked", "factor": "intensity"}, "task": {"type": "passive"}},
    {"design": {"type": "latin-square"}, "task": {"type": "categorization"}},
])
def test_summary_is_json_ready_for_the_report(section):
    design = plan_design(spec(**section), make_stimuli(), 0)
    summary = json.loads(json.dumps(design.summary))
    assert summary["groups"] == len(design.groups) and summary["rule"] == design.rule
    assert summary["design"] == section["design"]["type"]


# -- errors name the setting to change -----------------------------------------------------------
@pytest.mark.parametrize("section,field", [
    ({"stimuli": {"emotions": ["Happy", "Tired"]}}, ("experiment", "stimuli", "emotions", 1)),
    ({"stimuli": {"identities": ["id09"]}}, ("experiment", "stimuli", "identities", 0)),
    ({"task": {"type": "categorization", "choices": ["Happy", "Sad"]}},
     ("experiment", "task", "choices")),
    ({"design": {"type": "blocked", "groups": 3}}, ("experiment", "design", "groups")),
    ({"design": {"type": "latin-square", "groups": 3}}, ("experiment", "design", "groups")),
    ({"practice": {"trials": 2, "source": "unused"}}, ("experiment", "practice", "source")),
    ({"task": {"type": "passive", "catch": {"trials": 99}}},
     ("experiment", "task", "catch", "trials")),
])
def test_design_errors_carry_the_protocol_field(section, field):
    with pytest.raises(DesignError) as raised:
        plan_design(spec(**section), make_stimuli(), 0)
    assert raised.value.field == field
    assert raised.value.render().startswith(".".join(map(str, field)) + ": ")


# -- session length --------------------------------------------------------------------------
def test_session_estimate_of_a_rating_task_assumes_a_typical_rating_time():
    estimate = estimate_session(spec(timing={"fixation_ms": 500, "iti_ms": 1000}), trials=100)
    # 0.5 s fixation + 2 sliders x TYPICAL_SLIDER_S + 1 s blank
    assert estimate.seconds_per_trial == pytest.approx(1.5 + 2 * TYPICAL_SLIDER_S)
    assert estimate.minutes == pytest.approx(100 * estimate.seconds_per_trial / 60, abs=0.01)
    assert estimate.longest_minutes is None          # no timeout: no upper bound
    assert "both sliders" in estimate.assumption


def test_session_estimate_caps_responses_at_the_timeout():
    section = spec(task={"type": "categorization"},
                   timing={"fixation_ms": 0, "response_timeout_ms": 1000, "iti_ms": 0})
    estimate = estimate_session(section, trials=60)
    assert TYPICAL_CHOICE_S > 1.0 and estimate.seconds_per_trial == 1.0
    assert estimate.minutes == estimate.longest_minutes == 1.0


def test_session_estimate_of_passive_viewing_counts_catch_prompts():
    section = spec(task={"type": "passive", "catch": {"trials": 6, "response_ms": 3000}},
                   timing={"fixation_ms": 500, "stimulus_ms": 2000, "iti_ms": 500})
    estimate = estimate_session(section, trials=60, catch=6)
    assert estimate.seconds_per_trial == 3.0
    assert estimate.minutes == pytest.approx((60 * 3.0 + 6 * TYPICAL_CATCH_S) / 60, abs=0.01)
    assert estimate.longest_minutes == pytest.approx((60 * 3.0 + 6 * 3.0) / 60, abs=0.01)
    assert estimate.assumption.startswith("0.5 s fixation + 2 s face + 0.5 s blank")


# -- lists (design.lists) ----------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 7), st.integers(1, 4), st.integers(1, 8),
       st.integers(0, 10_000))
def test_stimulus_lists_share_out_sizes_emotions_and_cells_to_one(n_ids, n_emotions,
                                                                 n_intensities, n_lists, seed):
    from stimgen.design.counterbalance import stimulus_lists

    stimuli = [(f"e{e}", i / n_intensities, f"id{k}") for k in range(n_ids)
               for e in range(n_emotions) for i in range(1, n_intensities + 1)]
    n_lists = min(n_lists, len(stimuli))
    lists = stimulus_lists(*zip(*stimuli), n_lists, np.random.default_rng(seed))
    assert len(lists) == len(stimuli) and set(lists) <= set(range(n_lists))

    def spread(key):
        counts = Counter((key(s), k) for s, k in zip(stimuli, lists))
        return max(max(counts[v, k] for k in range(n_lists))
                   - min(counts[v, k] for k in range(n_lists))
                   for v in {key(s) for s in stimuli})

    assert spread(lambda s: "all") <= 1                 # list sizes
    assert spread(lambda s: s[0]) <= 1                  # each emotion
    assert spread(lambda s: s[:2]) <= 1                 # each emotion x intensity cell
    again = stimulus_lists(*zip(*stimuli), n_lists, np.random.default_rng(seed))
    assert again == lists                                # from the seed


def test_lists_give_each_order_one_balanced_list():
    design = plan_design(spec(task={"type": "norming", "catch": {"trials": 1}},
                              design={"participants": 6, "lists": 3},
                              practice={"trials": 1, "source": "repeat"}),
                         make_stimuli(), seed=4)
    table = main_trials(design.table)
    assert design.summary["lists"] == 3 and design.summary["list_sizes"] == [8, 8, 8]
    assert design.summary["raters_per_stimulus"] == 2
    assert design.columns[-1] == "stimulus_list"
    for g, group in enumerate(design.groups):
        rows = table[table["group"] == group]
        assert set(rows["stimulus_list"]) == {g % 3 + 1}
        assert design.summary["group_lists"][group] == g % 3 + 1
        # 3 identities x 4 emotions x 2 intensities in 3 lists: 2 of each emotion, 4 per intensity
        assert set(Counter(rows["emotion"]).values()) == {2}
        assert set(Counter(rows["intensity"]).values()) == {4}
    # every stimulus in exactly one list, shown by 2 of the 6 orders
    lists = table.groupby("stim_id")["stimulus_list"].nunique()
    assert (lists == 1).all() and len(lists) == 24
    assert set(table.groupby("stim_id")["group"].nunique()) == {2}
    assert "order g shows list ((g - 1) mod 3) + 1" in design.rule


def test_more_lists_than_stimuli_is_a_design_error_at_the_field():
    with pytest.raises(DesignError, match="5 lists, but the experiment has only 4 stimuli") \
            as caught:
        plan_design(spec(design={"participants": 5, "lists": 5}),
                    make_stimuli(identities=("id01",), intensities=(1.0,)), seed=1)
    assert caught.value.field == ("experiment", "design", "lists")
