"""Movie trials of a PsychoPy bundle (``experiment.show: clip``): each trial's video file in
the conditions files, and the clip routine that plays it once before the response screen.

stimgen/export/psychopy_bundle.py calls :func:`with_clip_files`; stimgen/export/psyexp.py
adds the routine with :func:`add_clip_routine`.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from stimgen.build_folder import VIDEO_COLUMN
from stimgen.errors import BuildError

#: Conditions-file column holding a trial's video, relative to the experiment folder.
CLIP_FILE = "clip_file"
#: A clip routine ends after the clip's own duration plus this margin even if the movie
#: never reports that it finished (a player that stalls must not hang a session).
CLIP_MARGIN_S = 2.0


def with_clip_files(design, stimuli: pd.DataFrame):
    """The design with a ``clip_file`` column (the stimulus's video, build-relative) in every
    trial table and the audit table.

    Raises
    ------
    BuildError
        A stimulus the design shows has no video (the build made no clips).
    """
    if VIDEO_COLUMN not in stimuli.columns:
        raise BuildError("experiment.show is `clip`, but the build's stimuli have no videos",
                         hint="set `output: {dynamic: {...}}` in the protocol and build again")
    videos = dict(zip(stimuli["stimulus_id"].astype(str), stimuli[VIDEO_COLUMN]))

    def add(table: pd.DataFrame) -> pd.DataFrame:
        table = table.copy()
        position = list(table.columns).index("stim_file") + 1
        files = [videos.get(str(sid)) for sid in table["stim_id"]]
        missing = [sid for sid, f in zip(table["stim_id"], files) if not isinstance(f, str)
                   or not f]
        if missing:
            raise BuildError(f"stimulus {missing[0]} is shown as a clip but has no video",
                             hint="run the same `stimgen build` command again; it redraws "
                                  "missing clips")
        table.insert(position, CLIP_FILE, files)
        return table

    columns = list(design.columns)
    columns.insert(columns.index("stim_file") + 1, CLIP_FILE)
    return dataclasses.replace(design, trials={g: add(t) for g, t in design.trials.items()},
                               table=add(design.table), columns=tuple(columns))


def add_clip_routine(exp, routine, layout, image_y: float):
    """The ``clip`` routine: the video, once, where the face will be; it ends when the video
    does (or ``clip_max_s`` later at most) and the trial routine then shows the apex still.

    Returns the routine, for the flow (before ``trial``).
    """
    from psychopy.experiment.components.movie import MovieComponent

    clip = routine("clip")
    movie = MovieComponent(exp, "clip", name="face_clip", movie="$clip_file",
                           size=(layout.image_height, layout.image_height),  # square stimuli
                           pos=(0, image_y), stopVal="", stopType="duration (s)",
                           forceEndRoutine=True, loop=False, noAudio=True)
    movie.params["movie"].updates = "set every repeat"
    movie.params["opacity"].val = 1         # PsychoPy's default (blank) compiles to None in JS
    # the experiment's units said outright: "from exp settings" compiles to `win.units` in the
    # PsychoJS script, a name that script does not define
    movie.params["units"].val = "height"
    clip.addComponent(movie)
    clip.settings.params["stopType"].val = "duration (s)"
    clip.settings.params["stopVal"].val = "$clip_max_s"
    return clip
