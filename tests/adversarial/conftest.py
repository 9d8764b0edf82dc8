"""Attacks on the promises of docs/threat-model.md, each played for real
against a real keep-server (through a tampering proxy where the attacker is
the server or the network). Fixtures: one server per session, a device per
test, the tampering proxy."""

from tests.client.conftest import device, server, server_data  # noqa: F401 — re-exported fixtures
from tests.reliability.test_hostile_proxy import tamper  # noqa: F401
