"""The client tests' fixtures (one real keep-server per session, a device per test)."""

from tests.client.conftest import device, server, server_data  # noqa: F401 — re-exported fixtures
