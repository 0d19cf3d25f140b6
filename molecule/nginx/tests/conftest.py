"""The nginx scenario's tests run over `podman exec` (see nginx_helpers.podman_host)."""

import pytest
from nginx_helpers import podman_host

pytest_plugins = ["sse_testinfra"]


@pytest.fixture(scope="module")
def host(_testinfra_host):
    """Molecule's host (parametrized by testinfra over its inventory), reached by podman."""
    return podman_host(_testinfra_host.backend.get_hostname())
