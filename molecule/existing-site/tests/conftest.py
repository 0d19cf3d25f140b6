"""Fixtures for the existing-site scenario: the target through podman exec."""

from __future__ import annotations

import pytest
from sse_testinfra import direct_host

pytest_plugins = ["sse_testinfra"]


@pytest.fixture
def host(host):
    return direct_host(host)
