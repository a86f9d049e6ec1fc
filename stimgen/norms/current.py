"""Whether norms.tsv still describes a build's images: each row records the sha256 of the image
that was rated, and a rebuild that redraws a stimulus makes its row stale (kept, never used).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stimgen.build_folder import NORMS_IMAGE_SHA256, NORMS_TSV, read_norms
from stimgen.wording import quantity

__all__ = ["NormsMatch", "match_norms", "warn_stale_norms", "UNVERIFIABLE"]

log = logging.getLogger("stimgen")


@dataclass(frozen=True)
class NormsMatch:
    """norms.tsv's rows sorted by whether the image that was rated is still the build's."""

    current: pd.DataFrame                 # rows whose rated image is the build's image now
    changed: list[str]                    # stimulus ids redrawn since they were rated
    gone: list[str]                       # stimulus ids no longer in the build
    unverifiable: bool                    # norms.tsv has no image_sha256 (older stimgen)

    @property
    def stale(self) -> list[str]:
        """Every row that no longer applies: redrawn or gone."""
        return self.changed + self.gone

    def stale_message(self) -> str:
        """One line naming the rows that no longer apply (empty when none)."""
        parts = []
        if self.changed:
            parts.append(f"{quantity(len(self.changed), 'normed stimulus')} changed since "
                         f"they were rated ({_first(self.changed)})")
        if self.gone:
            parts.append(f"{quantity(len(self.gone), 'normed stimulus')} no longer in the "
                         f"build ({_first(self.gone)})")
        return "; ".join(parts)


def _first(ids: list[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (f", and {len(ids) - n} more" if len(ids) > n else "")


def match_norms(norms: pd.DataFrame, stimuli: pd.DataFrame) -> NormsMatch:
    """Which rows of norms.tsv still describe the build's images.

    A row applies while its ``image_sha256`` (the image that was rated) equals the
    stimulus's ``sha256`` in stimuli.tsv; a rebuild that redraws a stimulus (a new seed,
    another protocol) changes it. A norms.tsv without the column (stimgen before it
    recorded the images) cannot be checked: its rows are all kept, ``unverifiable`` is set.

    Examples
    --------
    >>> stimuli = pd.DataFrame({"stimulus_id": ["a", "b"], "sha256": ["1", "2"]})
    >>> norms = pd.DataFrame({"stimulus_id": ["a", "b", "c"], "image_sha256": ["1", "9", "3"]})
    >>> found = match_norms(norms, stimuli)
    >>> found.current["stimulus_id"].tolist(), found.changed, found.gone
    (['a'], ['b'], ['c'])
    """
    ids = norms["stimulus_id"].astype(str)
    now = dict(zip(stimuli["stimulus_id"].astype(str), stimuli["sha256"].astype(str)))
    in_build = ids.isin(set(now))
    gone = ids[~in_build].tolist()
    if NORMS_IMAGE_SHA256 not in norms.columns:
        return NormsMatch(norms[in_build.to_numpy()], [], gone, True)
    rated = norms[NORMS_IMAGE_SHA256].astype(str)
    same = in_build & (ids.map(now) == rated)
    changed = ids[in_build & ~same].tolist()
    return NormsMatch(norms[same.to_numpy()], changed, gone, False)


UNVERIFIABLE = (f"{NORMS_TSV} was written by a stimgen that did not record which images were "
                "rated, so it cannot be checked that they are the build's images now; run "
                "`stimgen norms` again on the same data to record them")


def warn_stale_norms(root: Path, stimuli: pd.DataFrame) -> NormsMatch | None:
    """After a rebuild: warn when stimuli that `stimgen norms` rated were redrawn (or left
    out), so their norms no longer apply. norms.tsv and norms_summary.json are left as they
    are: they come from participants' data; the report and `stimgen select` skip those rows."""
    found = read_norms(root)
    if found is None:
        return None
    match = match_norms(found[0], stimuli)
    if match.stale:
        log.warning("%s: their norms in %s no longer apply (the file is kept as it is; the "
                    "report and `stimgen select` leave them out); run the norming study again "
                    "with these faces, or `stimgen norms` with data collected on them",
                    match.stale_message(), NORMS_TSV)
    return match
