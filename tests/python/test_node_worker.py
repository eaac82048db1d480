"""The Node reference worker (examples/node-worker) on this test server: its tests, run by
``node --test`` (the conformance suite of tests/conformance, and the processOrder example
killed with SIGKILL after the payment). They copy this session's migrated template
database, connect as the same login roles, and drop their databases at the end.

Needs ``node`` and ``npm ci`` in examples/node-worker (.ci/run does both); skipped without
them, except in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NODE_WORKER = Path(__file__).resolve().parents[2] / "examples" / "node-worker"


def test_node_worker_passes_its_tests(server_url: str, template_db: str, login_roles: None) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_WORKER / "node_modules" / "pg").is_dir():
        why = "node, and `npm ci` in examples/node-worker, are needed for the Node worker's tests"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    env = {
        **os.environ,
        "DATABASE_URL": server_url,
        "DURABLE_DATABASE_URL": server_url,
        "DURABLE_TEMPLATE_DB": template_db,
        "DURABLE_MIGRATE": f"{sys.executable} -m durable",
    }
    result = subprocess.run(
        [node, "--test", "test/"],
        cwd=NODE_WORKER,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    counts = ("# tests", "# pass", "# fail")
    print("\n".join(line for line in result.stdout.splitlines() if line.startswith(counts)))
    assert result.returncode == 0, f"node --test failed:\n{result.stdout[-30000:]}\n{result.stderr[-5000:]}"
