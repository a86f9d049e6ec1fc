"""stimgen: validated, counterbalanced face-emotion stimuli from a declarative protocol.

The Python API the `stimgen` command is a thin shell over::

    import stimgen
    protocol = stimgen.load_protocol("protocols/demo.yaml")
    result = stimgen.build(protocol, out="build/demo")
    result.stimuli.head()
"""
from __future__ import annotations

from stimgen.version import __version__

__all__ = ["__version__", "load_protocol", "build", "Protocol", "BuildResult", "StimgenError"]


def __getattr__(name):
    # Lazy, so that `import stimgen` (and the CLI's --help) stays fast.
    if name == "load_protocol":
        from stimgen.protocol.loader import load_protocol
        return load_protocol
    if name == "build":
        from stimgen.pipeline import build
        return build
    if name == "BuildResult":
        from stimgen.pipeline import BuildResult
        return BuildResult
    if name == "Protocol":
        from stimgen.protocol.models import Protocol
        return Protocol
    if name == "StimgenError":
        from stimgen.errors import StimgenError
        return StimgenError
    raise AttributeError(f"module 'stimgen' has no attribute {name!r}")
