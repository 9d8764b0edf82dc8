"""Suite-wide policy: in CI (CI=true) a skipped test is a failure — everything a
test needs is installed and started by the project's own scripts. Outside CI,
tests that need a missing service may skip."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
from collections.abc import Iterator

import pytest

from support.services import (
    create_bucket,
    create_database,
    moto_s3,
    moto_server_exe,
    postgres_bin,
    postgres_cluster,
)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as a terminal delivers it, however the suite was started. A
    shell without job control starts background jobs (`make test &`, nohup)
    with SIGINT ignored, and an ignored signal is inherited: the tests that
    interrupt a restore would then see it carry on and exit 0. A Python
    handler is not inherited across exec, so every program a test starts
    gets the default disposition back."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"
    return None


_names = itertools.count()


def require_tool(name: str) -> str:
    """The path of a program scripts/test-services.sh installs (dig, faketime,
    ddclient, ...); without it the test skips, which CI counts as a failure."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.skip(f"{name} missing (scripts/test-services.sh installs it)")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL cluster on 127.0.0.1 for the whole session."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries missing (scripts/test-services.sh)")
    with postgres_cluster() as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol server (moto) on 127.0.0.1 for the whole session."""
    if moto_server_exe() is None:
        pytest.skip("moto_server missing (pip install 'moto[server]')")
    with moto_s3() as url:
        yield url


@pytest.fixture
def fresh_database(postgres_url: str) -> str:
    """The URL of a new, empty database in the session's cluster."""
    return create_database(postgres_url, f"t{os.getpid()}_{next(_names)}")


@pytest.fixture
def fresh_bucket(s3_endpoint: str) -> str:
    """An `s3://` objects URL for a new, empty bucket on the session's S3 server."""
    name = f"keep-{os.getpid()}-{next(_names)}"
    create_bucket(s3_endpoint, name)
    return f"s3://{name}/objects?endpoint={s3_endpoint}&region=us-east-1"


@pytest.fixture(autouse=True)
def _working_directory_kept() -> Iterator[None]:
    """A test that leaves the process in another directory (one that is then
    deleted) breaks every later test that starts a program: caught here."""
    before = os.getcwd()
    yield
    assert os.getcwd() == before, f"the test left the working directory at {os.getcwd()}"
