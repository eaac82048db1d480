"""The Worker under test, for the fixtures of durable.testing (docs/testing.md)."""

from __future__ import annotations

import pytest
from subscription import worker

from durable import Worker


@pytest.fixture
def durable_worker() -> Worker:
    return worker
