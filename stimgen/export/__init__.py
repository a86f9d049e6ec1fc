"""Exports of a build: the PsychoPy experiment bundle (`experiment/` in the build folder).

:func:`write_bundle` is the entry point; :mod:`stimgen.export.psyexp` builds the experiment.
"""
from stimgen.export.psychopy_bundle import write_bundle

__all__ = ["write_bundle"]
