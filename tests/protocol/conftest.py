from __future__ import annotations

import pytest

from keep.protocol.keys import MasterKey, RepositoryKeys


@pytest.fixture(scope="session")
def master() -> MasterKey:
    return MasterKey(bytes(range(64)))


@pytest.fixture(scope="session")
def keys(master: MasterKey) -> RepositoryKeys:
    return RepositoryKeys.from_master(master)
