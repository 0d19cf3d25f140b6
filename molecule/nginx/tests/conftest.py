"""The nginx scenario's tests run over `podman exec` (see nginx_helpers.podman_host).

The shared plugin sse_testinfra is loaded by the verifier (PYTEST_PLUGINS in
.config/molecule/config.yml); nginx_helpers is registered here, before its import, so its
asserts report their values as the tests' own do.
"""

import pytest

pytest.register_assert_rewrite("nginx_helpers")

from nginx_helpers import podman_host  # noqa: E402


@pytest.fixture(scope="module")
def host(_testinfra_host):
    """Molecule's host (parametrized by testinfra over its inventory), reached by podman."""
    return podman_host(_testinfra_host.backend.get_hostname())
