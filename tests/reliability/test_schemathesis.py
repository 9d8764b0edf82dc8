"""schemathesis against the OpenAPI document keep-server serves: generated
requests (coverage, fuzzing and stateful phases) for every operation, with a
device credential; no 5xx, every reply conforms to the document."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from keep.client.device.state import DeviceState
from tests.client.conftest import Device

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_openapi_document_holds_under_generated_requests(device: Device) -> None:
    import subprocess

    device.init()
    token = DeviceState.load(device.home).device_token
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{device.server}/v1/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "-c",
            "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
            "-n",
            "20",
            "--seed",
            "1",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert counts is not None, result.stdout[-2000:]
    assert counts.group(1) == counts.group(2)  # every generated case passed
    assert int(counts.group(1)) >= 500
