"""The client tests' fixtures (one real keep-server per session, a device per
test) and the tampering proxy in front of that server."""

from tests.client.conftest import device, server, server_data  # noqa: F401 — re-exported fixtures
from tests.reliability.test_hostile_proxy import tamper  # noqa: F401
