"""Counterbalancing and experiment planning: the [design] stage of the build.

:mod:`~stimgen.design.counterbalance` holds the pure squares, shuffles and group rules;
:mod:`~stimgen.design.plan` plans an experiment's groups and trial tables over the stimuli.
"""
from stimgen.design.counterbalance import (constrained_shuffle, group_for_participant,
                                           group_name, group_rng, latin_square, longest_run,
                                           participant_rule, williams_square)
from stimgen.design.plan import (CATEGORIZATION_COLUMNS, PASSIVE_COLUMNS, STIMULUS_COLUMNS,
                                 TRIAL_COLUMNS, TYPICAL_CATCH_S, TYPICAL_CHOICE_S,
                                 TYPICAL_SLIDER_S, Design, ExperimentPlan, SessionEstimate,
                                 estimate_session, plan_design, plan_experiment_over,
                                 planned_stimuli, select_stimuli, trial_columns)

__all__ = [
    "CATEGORIZATION_COLUMNS", "PASSIVE_COLUMNS", "STIMULUS_COLUMNS", "TRIAL_COLUMNS",
    "TYPICAL_CATCH_S", "TYPICAL_CHOICE_S", "TYPICAL_SLIDER_S",
    "Design", "ExperimentPlan", "SessionEstimate",
    "constrained_shuffle", "estimate_session", "group_for_participant",
    "group_name", "group_rng", "latin_square", "longest_run", "participant_rule",
    "plan_design", "plan_experiment_over", "planned_stimuli", "select_stimuli", "trial_columns",
    "williams_square",
]
