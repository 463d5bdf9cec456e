"""Unit-test fixtures."""

import os

import pytest


@pytest.fixture
def settings_env(monkeypatch, tmp_path):
    """No K2_* variable from the caller's environment, K2_HOME under tmp_path, and tmp_path as the working
    directory (so no k2.toml is found): settings as their defaults give them."""
    for key in list(os.environ):
        if key.startswith("K2_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("K2_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
