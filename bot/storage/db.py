"""Engine creation, schema migration (Alembic), and the one rule every storage domain follows for database access:
reads and writes go through `Database.read()`/`Database.write()`, writes to a SQLite file are serialized by one
lock shared by every domain in the process, and database errors leave storage as `StorageError`."""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy import text as sql
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from bot.errors import StorageError

if TYPE_CHECKING:  # Alembic is loaded only to migrate (~10 MB resident with Mako and Pygments)
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and foreign keys, and its directory is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        # psycopg 3 is the driver we ship; a plain postgresql:// URL would ask for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=10)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# PostgreSQL advisory lock (two-int form: its own key space) that serializes migrations: "ndmg", then the schema.
MIGRATION_LOCK_KEY = 0x6E646D67


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision`; safe to call at every start, and from many processes at once.

    On PostgreSQL the migration transaction first takes a transaction-scoped advisory lock for the schema it
    migrates, so workers and schedulers starting together migrate one after the other: the first runs the
    migrations, the others then find the schema at `revision` and do nothing (the lock goes with the commit,
    or with the connection of a process that dies). A schema already at head is checked without Alembic."""
    if revision == "head" and at_head(engine):
        return
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sql("SELECT pg_advisory_xact_lock(:k, hashtext(coalesce(current_schema(), '')))"),
                         {"k": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


@cache
def head_revisions() -> frozenset[str]:
    """The packaged migrations' heads: revisions no other migration names as its down_revision."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                if name in ("revision", "down_revision"):
                    value = ast.literal_eval(node.value)
                    values = value if isinstance(value, (tuple, list)) else (value,)
                    (revisions if name == "revision" else downs).update(v for v in values if v)
    return frozenset(revisions - downs)


def at_head(engine: Engine) -> bool:
    """Whether the database's Alembic version is exactly the packaged heads (nothing to migrate)."""
    heads = head_revisions()
    with engine.connect() as conn:
        if not heads or not inspect(conn).has_table("alembic_version"):
            return False
        return {r[0] for r in conn.execute(sql("SELECT version_num FROM alembic_version"))} == heads


_locks_guard = threading.Lock()
_file_locks: dict[str, threading.Lock] = {}
_engine_locks: WeakKeyDictionary[Engine, threading.Lock] = WeakKeyDictionary()


def sqlite_write_lock(engine: Engine) -> threading.Lock | None:
    """The lock every write to this SQLite database takes in this process (None for other databases).

    One lock per database file, whichever engine or storage domain writes: SQLite allows one writer at a time,
    and queueing writers here beats them spinning on the busy timeout (and failing with "database is locked").
    """
    if engine.dialect.name != "sqlite":
        return None
    db = engine.url.database
    with _locks_guard:
        if db and db != ":memory:" and not db.startswith("file:"):
            return _file_locks.setdefault(str(Path(db).expanduser().resolve()), threading.Lock())
        return _engine_locks.setdefault(engine, threading.Lock())


def is_unavailable(exc: BaseException) -> bool:
    """True for SQLAlchemy errors that say the database cannot be reached or used right now (connection refused,
    reset or lost, "database is locked", pool exhausted), not for a bad statement or bad data."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError
                  | sa_exc.TimeoutError):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


# Advisory lock keys by job name; "processing" keeps the key older versions used, so that an old and a new
# worker running side by side during an upgrade still exclude each other.
SINGLE_WRITER_KEYS = {"processing": 0x6E657773,  # "news"
                      "scheduler": 0x6E647363}  # "ndsc": the one scale-out scheduler (bot/distributed)

# What storage translates into StorageError: driver errors and the pool's connection errors.
_DATABASE_ERRORS = (sa_exc.DBAPIError, sa_exc.DisconnectionError, sa_exc.TimeoutError)


def _storage_error(exc: BaseException) -> StorageError:
    inner = getattr(exc, "orig", None) or exc
    message = " ".join(str(inner).split())[:500] or type(inner).__name__
    return StorageError(message, unavailable=is_unavailable(exc))


class Database:
    """An engine and the access rule every storage domain shares (the base of each domain's storage class)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._write_lock = sqlite_write_lock(engine)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading; database errors raise StorageError."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except _DATABASE_ERRORS as exc:
            raise _storage_error(exc) from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed on leaving (serialized per SQLite file); database errors raise
        StorageError."""
        try:
            if self._write_lock is None:
                with self.engine.begin() as conn:
                    yield conn
            else:
                with self._write_lock, self.engine.begin() as conn:
                    yield conn
        except _DATABASE_ERRORS as exc:
            raise _storage_error(exc) from exc

    def ping(self) -> None:
        """Run one trivial query (the readiness check); raises StorageError when the database cannot answer."""
        with self.read() as conn:
            conn.execute(sql("SELECT 1"))

    def insert(self, table: Table) -> Any:
        """The dialect's INSERT (with on_conflict_do_nothing/do_update) for `table`."""
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    @contextmanager
    def single_writer_lock(self, name: str) -> Iterator[bool]:
        """Try to become the one worker (across processes) doing `name`; yields whether this one is.

        On PostgreSQL a session advisory lock (key SINGLE_WRITER_KEYS[name]), held while the block runs; SQLite
        runs one service per database file, so it always yields True.
        """
        key = SINGLE_WRITER_KEYS[name]
        if self.dialect != "postgresql":
            yield True
            return
        try:
            with self.engine.connect() as conn:
                got = conn.execute(sql("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                try:
                    yield bool(got)
                finally:
                    if got:
                        conn.execute(sql("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
        except _DATABASE_ERRORS as exc:
            raise _storage_error(exc) from exc


__all__ = ["MIGRATION_LOCK_KEY", "SINGLE_WRITER_KEYS", "Database", "alembic_config", "at_head", "head_revisions", "is_unavailable", "make_engine", "sqlite_write_lock", "upgrade"]
