"""Test isolation: a developer's own stimgen settings never leak into test builds."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch, tmp_path_factory):
    # The user config file (docs/cluster.md) sets executors; tests choose their own.
    monkeypatch.setenv("STIMGEN_CONFIG", str(tmp_path_factory.getbasetemp() / "no-config.yaml"))


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    """A stimgen home with tiny random models installed (as `make-tiny --install` does)."""
    from stimgen.weights.tiny import install_tiny, make_tiny

    home = tmp_path_factory.mktemp("home")
    install_tiny(make_tiny(tmp_path_factory.mktemp("tiny"), resolution=32), home=home)
    return home
