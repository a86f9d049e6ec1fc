"""Test isolation: a developer's own stimgen settings never leak into test builds."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch, tmp_path_factory):
    # The user config file (docs/cluster.md) sets executors; tests choose their own.
    monkeypatch.setenv("STIMGEN_CONFIG", str(tmp_path_factory.getbasetemp() / "no-config.yaml"))
