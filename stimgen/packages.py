"""The optional packages: what needs each and the exact command that installs it (pure data).

Only some protocols import these (photos, experiments, clips, the hsemotion rater);
:mod:`stimgen.preflight` checks the ones a protocol needs before a build starts, and the code
that imports each names the same command when the import fails.
"""
from __future__ import annotations

from dataclasses import dataclass

#: pip without its list of "dependency conflicts": PsychoPy is installed with --no-deps
#: (requirements-psychopy.txt), so every later `pip install` would list PsychoPy's own,
#: deliberately absent, dependencies.
PIP = "pip install --no-warn-conflicts"
#: PsychoPy and what writing and running an experiment needs (in a clone of stimgen), exactly
#: as the README says (tests/test_packaging.py checks that).
PSYCHOPY_INSTALL = "pip install --no-deps -r requirements-psychopy.txt"


@dataclass(frozen=True)
class OptionalPackage:
    """A package only some protocols need: what needs it and the command that installs it."""

    name: str                   # as pip names it
    module: str                 # what stimgen imports
    needed_for: str             # in words, for messages
    install: str                # the exact command


FACE_ALIGNMENT = OptionalPackage(
    "face-alignment", "face_alignment", "the landmarks of photo identities (emostyle)",
    f'{PIP} "face-alignment>=1.5"   (or, in a clone of stimgen: {PIP} -e ".[photos]")')
PSYCHOPY = OptionalPackage(
    "psychopy", "psychopy.experiment", "writing the PsychoPy experiment (`experiment:`)",
    f"{PSYCHOPY_INSTALL}   (in a clone of stimgen; see docs/psychopy.md)")
JAVASCRIPTHON = OptionalPackage(
    "javascripthon", "metapensiero.pj.api",
    "PsychoPy's Python-to-JavaScript translator, for the online experiment "
    "(`experiment.online: true`)",
    f"{PSYCHOPY_INSTALL}   (in a clone of stimgen; see docs/psychopy.md)")
ONNXRUNTIME = OptionalPackage(
    "onnxruntime", "onnxruntime", "the hsemotion rater's network",
    f'{PIP} "onnxruntime>=1.17,<2"')
FFMPEG = OptionalPackage(
    "imageio-ffmpeg", "imageio_ffmpeg", "the H.264 clips of `output.dynamic` (ffmpeg)",
    f'{PIP} "imageio-ffmpeg>=0.6,<0.7"')
