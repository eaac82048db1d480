"""The test databases' lifecycle, now in the library (durable.testing.databases, which the
time-skipping harness shares): this module keeps the old name for tests that import it."""

from durable.testing.databases import (
    STALE_AFTER,
    WHERE,
    create,
    created,
    drop,
    drop_created,
    drop_stale,
    is_stale,
    new_name,
    register,
    url_of,
)

__all__ = [
    "STALE_AFTER",
    "WHERE",
    "create",
    "created",
    "drop",
    "drop_created",
    "drop_stale",
    "is_stale",
    "new_name",
    "register",
    "url_of",
]
