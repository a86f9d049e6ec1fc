"""What `stimgen build` and `stimgen validate` print about a protocol before any face is
drawn: the stimuli, raters and tolerance, and the experiment's groups, trials and session.
"""
from __future__ import annotations


def plan_summary(protocol, out, plan=None) -> str:
    """What a build of ``protocol`` will make; ``plan``: its experiment plan, if made already."""
    from stimgen.plan import plan_targets, resolve_raters
    from stimgen.wording import quantity

    # the raters exactly as the build will resolve them (auto, also, correction's judge)
    resolved, raters = resolve_raters(protocol)
    targets = plan_targets(protocol.targets)
    n_ids = len(protocol.identities)
    kinds = sorted({i.kind for i in protocol.identities})
    start, end = protocol.validation.weak_region
    in_weak = sum(1 for t in targets if t.angle is not None and _in_weak(t.angle, start, end))
    lines = [
        f"study       {protocol.study.name}",
        f"stimuli     {quantity(n_ids, 'identity')} x {quantity(len(targets), 'target')} = "
        f"{quantity(n_ids * len(targets), 'stimulus')}",
        f"identities  {', '.join(i.id for i in protocol.identities[:8])}"
        f"{' ...' if n_ids > 8 else ''} ({'/'.join(kinds)})",
        f"backend     {protocol.backend.name}",
        *_rater_lines(raters.names, resolved.validation.correction),
        f"tolerance   distance <= {protocol.validation.tolerance.distance:g}, "
        f"direction <= {protocol.validation.tolerance.direction:g} deg",
        f"weak region {start:g}-{end:g} deg ({in_weak} of {len(targets)} targets inside)",
        f"output      {out or protocol.default_output()}",
    ]
    correction = resolved.validation.correction     # its rater made concrete
    if correction is not None:
        lines.insert(-1, f"correction  {correction.rater} "
                         f"steers, up to {quantity(correction.iterations, 'round')} per "
                         f"stimulus, requests within radius {correction.max_request:g}, "
                         f"stop within {correction.tolerance:g}")
    lines += _rater_limit_lines(resolved, targets)      # the raters the build will use
    if protocol.experiment is not None:
        if plan is None:
            from stimgen.protocol.loader import plan_experiment

            plan = plan_experiment(protocol)
        lines += _experiment_lines(protocol.experiment, plan)
        lines += _upload_lines(protocol, out or protocol.default_output())
    return "\n".join(lines)


def _upload_lines(protocol, out) -> list[str]:
    """Where the experiment runs: which folder goes to Pavlovia, or why none does."""
    from pathlib import Path

    from stimgen.build_folder import EXPERIMENT_DIR
    from stimgen.export.psychopy_bundle import experiment_name

    folder = Path(out) / EXPERIMENT_DIR
    if protocol.experiment.online:
        name = experiment_name(protocol.study.name)
        return [f"online      upload the folder {folder}/ as a whole to Pavlovia (open "
                f"{name}.psyexp in Builder and press Sync): it holds the images, conditions "
                "files and PsychoJS scripts; pilot it locally first (docs/psychopy.md)"]
    return [f"online      no: {folder}/ runs in PsychoPy on a lab computer; its images stay in "
            f"{Path(out) / 'stimuli'}/, which Pavlovia would not get (set experiment.online: "
            "true for a folder to upload)"]


def _rater_limit_lines(protocol, targets) -> list[str]:
    """A note per named basic emotion a rater of the build reads poorly
    (stimgen/raters/limits.py), so the flags it will get come as no surprise."""
    from stimgen.plan import rating_of
    from stimgen.raters.limits import known_limits

    raters = rating_of(protocol).names
    limits = known_limits(raters, [t.expression for t in targets], protocol.backend.name)
    return [f"note        {limit.note()}" for limit in limits]


def _rater_lines(names, correction) -> list[str]:
    """One line per rater of the build, primary first, with its role."""
    steering = correction.rater if correction is not None else None
    width = max(len(name) for name in names)
    lines = []
    for index, name in enumerate(names):
        if index == 0 and name == steering:
            role = ("primary (tolerance, flags, accuracy figures) and steers the correction: "
                    "no other rater judges it, so its corrected figures are optimistic")
        elif index == 0:
            role = "primary (tolerance, flags, accuracy figures)" + (
                "; judges the correction" if steering else "")
        elif name == steering:
            role = "steers the correction"
        else:
            role = "also reported"
        lines.append(f"{'raters' if index == 0 else '':<12}{name:<{width}}  {role}")
    return lines


def _in_weak(angle, start, end) -> bool:
    from stimgen.circumplex import in_angle_interval

    return bool(in_angle_interval(angle, start, end))


def _experiment_lines(experiment, plan) -> list[str]:
    """The experiment part of the plan: groups, trials, breaks and session length."""
    summary, session = plan.design.summary, plan.session
    groups = plan.design.groups
    names = groups[0] if len(groups) == 1 else f"{groups[0]} ... {groups[-1]}"
    levels = ", ".join(summary.get("levels", []))
    counted = {
        "random": f"{len(groups)} order{'s' if len(groups) > 1 else ''} ({names}), each its "
                  "own random order",
        "blocked": f"{len(groups)} groups ({names}): {len(summary.get('levels', []))} "
                   f"{summary.get('factor')} blocks ({levels}) in the orders of a balanced "
                   "Latin square",
        "latin-square": f"{len(groups)} lists ({names}): each identity in one of "
                        f"{len(summary.get('levels', []))} {summary.get('factor')} conditions "
                        f"({levels}) per list",
    }[summary["design"]]
    main = summary["main_trials_per_group"]
    main_text = str(main[0]) if len(main) == 1 else f"{main[0]}-{main[-1]}"
    shown = (f"{summary['stimuli_in_design']} stimuli"
             + (f" x {summary['repetitions']} repetitions" if summary["repetitions"] > 1
                else ", each once"))
    if summary["design"] == "latin-square":
        shown = f"a share of the {summary['stimuli_in_design']} stimuli per list"
    if "lists" in summary:
        sizes = sorted(set(summary["list_sizes"]))
        size = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        shown = (f"one of {summary['lists']} lists of {size} of the "
                 f"{summary['stimuli_in_design']} stimuli"
                 + (f", x {summary['repetitions']} repetitions" if summary["repetitions"] > 1
                    else ""))
    trials = f"{session.trials} per participant: "
    if summary["practice_trials"]:
        source = {"repeat": "repeats of main-trial stimuli",
                  "unused": "stimuli not in the main trials"}[summary["practice_source"]]
        trials += f"{summary['practice_trials']} practice ({source}) + "
    trials += f"{main_text} main ({shown})"
    if summary.get("catch_trials"):
        trials += f"; {summary['catch_trials']} of the main trials are catch trials"
    lines = [f"experiment  {_experiment_line(experiment)}",
             f"groups      {counted}",
             f"assignment  {_assignment(experiment, plan.design)}",
             f"trials      {trials}",
             f"breaks      {_breaks_text(experiment, summary)}",
             f"session     {_session_text(session, summary)}",
             f"            one trial: {session.assumption}"]
    if experiment.stimuli.exclude_out_of_tolerance:
        lines.append("note        stimuli out of tolerance are left out once rated, so the "
                     "built experiment can have fewer trials (this plan assumes none is)")
    if summary.get("note"):
        lines.append(f"note        {summary['note']}")
    return lines


def _assignment(experiment, design) -> str:
    if not experiment.online:
        return design.rule
    text = ("each session's group is drawn by Pavlovia's shelf (the Counterbalance routine), "
            "the groups filling equally; without the shelf, ?group=<name> in the address, "
            "else a random group")
    if "lists" in design.summary:
        text += (f"; order g shows list ((g - 1) mod {design.summary['lists']}) + 1, so each "
                 f"stimulus is rated by {design.summary['raters_per_stimulus']} of every "
                 f"{len(design.groups)} participants")
    return text


def _breaks_text(experiment, summary) -> str:
    counts = summary["breaks_per_group"]
    if counts == [0]:
        return "none"
    number = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    when = []
    if experiment.breaks.every:
        when.append(f"after every {experiment.breaks.every} main trials")
    if summary["design"] == "blocked" and experiment.breaks.between_blocks:
        when.append("between blocks")
    return f"{number} per participant, {' and '.join(when)}"


def _session_text(session, summary) -> str:
    def minutes(value: float) -> str:
        return "under 1 min" if value < 1 else f"about {value:.0f} min"

    text = f"{minutes(session.minutes)} of trials per participant"
    if session.longest_minutes is not None \
            and minutes(session.longest_minutes) != minutes(session.minutes):
        text += (f" ({minutes(session.longest_minutes)} if every response waits for its "
                 "time limit)")
    breaks = summary["breaks_per_group"][-1]
    return text + "; instructions" + (" and self-paced breaks" if breaks else "") \
        + " come on top"


def _experiment_line(experiment) -> str:
    task = getattr(getattr(experiment, "task", None), "type", "?")
    design = getattr(getattr(experiment, "design", None), "type", "?")
    return f"{task} task, {design} design"
