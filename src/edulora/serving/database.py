"""The feedback database's connections: each of its handles (``FeedbackStore``, ``ReceivedLog``) opens its own.

One connection per handle, shared by the server's threads and serialized by a lock (``check_same_thread``
off). Autocommit (``isolation_level=None``): a handle opens the transactions it needs itself. WAL, so that
one handle reading never waits on the other writing, and a 5 s ``busy_timeout`` for the moments the other
connection holds the write lock.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import EduloraError


class Database:
    """A connection to the SQLite file at ``path``, after ``setup`` (its tables, migrations) ran on it; a file
    that is not a usable database is a one-line error."""

    def __init__(self, path: str | Path, setup: Callable[[sqlite3.Connection], None]):
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            setup(self._db)
        except sqlite3.DatabaseError as err:
            raise EduloraError(f"{self.path}: not a usable feedback database ({err})") from None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()
