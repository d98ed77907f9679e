"""A throwaway PostgreSQL cluster for tests: ``initdb`` in a temporary folder, one server per session.

The binaries come from ``$VIGIL_TEST_PG_BIN``, Debian's ``/usr/lib/postgresql/<version>/bin`` (package
``postgresql-15``) or ``$PATH``. The server listens only on a unix socket in its own folder (no TCP), on
a port that nothing else uses, with durability off (it is thrown away). PostgreSQL refuses to run as
root: as root, ``initdb`` and ``pg_ctl`` run as the ``postgres`` user if there is one, else ``nobody``,
and the folder is given to that user.

Every test gets a fresh database (:meth:`PgCluster.new_database`), a copy of a template that the
catalog's migrations brought to the newest revision once per session, so a test does not pay for them.

Example::

    cluster = PgCluster.start()
    url = cluster.new_database()  # postgresql+psycopg://postgres@/t1?host=/tmp/...&port=...
    ...
    cluster.drop_database(url)
    cluster.stop()
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install them with "
    "`apt-get install postgresql-15` (Debian), or set VIGIL_TEST_PG_BIN to the folder holding them"
)
TEMPLATE = "vigil_template"


def pg_bin_dir() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``, or None."""
    candidates: list[Path] = []
    if os.environ.get("VIGIL_TEST_PG_BIN"):
        candidates.append(Path(os.environ["VIGIL_TEST_PG_BIN"]))
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version(p.parent.name))
    candidates.extend(reversed(debian))
    if (found := shutil.which("initdb")) is not None:
        candidates.append(Path(found).parent)
    for c in candidates:
        if all(os.access(c / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return c
    return None


def _name(url: str) -> str:
    """The database name in a URL :meth:`PgCluster.url` made."""
    return url.split("@/", 1)[1].split("?", 1)[0]


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _server_user() -> str | None:
    """The user to run the server as when we are root (None: not root, run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and there is neither a 'postgres' nor a 'nobody' user for PostgreSQL")


def _as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    if user is None:
        return list(argv)
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *argv]
    entry = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", *argv]


@dataclass
class PgCluster:
    """One running throwaway cluster; :meth:`start` makes it, :meth:`stop` removes it."""

    bin_dir: Path
    root: Path
    port: int
    user: str | None
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @classmethod
    def start(cls, bin_dir: Path | None = None) -> PgCluster:
        """initdb and start a cluster; RuntimeError with :data:`INSTALL_HINT` if there are no binaries."""
        bin_dir = bin_dir or pg_bin_dir()
        if bin_dir is None:
            raise RuntimeError(INSTALL_HINT)
        user = _server_user()
        # /tmp: a short path (a unix socket's is limited to 107 bytes) that the server's user can reach
        root = Path(tempfile.mkdtemp(prefix="vigil-pg-", dir="/tmp" if Path("/tmp").is_dir() else None))
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        cluster = cls(bin_dir=bin_dir, root=root, port=_free_port(), user=user)
        try:
            cluster._initdb()
            cluster._pg_ctl(
                "start",
                "-w",
                "-t",
                "60",
                "-l",
                str(root / "server.log"),
                "-o",
                f"-p {cluster.port} -k {root} -c listen_addresses='' -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            )
        except BaseException:
            cluster._remove()
            raise
        atexit.register(cluster.stop)
        cluster._make_template()
        return cluster

    def _initdb(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args)

    def _run(self, *argv: str) -> None:
        done = subprocess.run(_as_user(self.user, argv), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr or done.stdout}\n{tail}")

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` (unix socket, trust authentication)."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.root}&port={self.port}"

    def execute(self, *statements: str, database: str = "postgres") -> None:
        """Run statements outside a transaction (CREATE/DROP DATABASE)."""
        import psycopg

        with psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname=database) as conn:
            conn.autocommit = True
            for sql in statements:
                conn.execute(sql)  # type: ignore[arg-type]

    def _make_template(self) -> None:
        """A database at the newest revision that every test's database copies."""
        from vigil.storage.db import Database

        self.execute(f"CREATE DATABASE {TEMPLATE} TEMPLATE template0")
        Database(self.url(TEMPLATE)).close()
        self.execute(f"ALTER DATABASE {TEMPLATE} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")

    def new_database(self, *, empty: bool = False, copy_of: str | None = None) -> str:
        """A fresh database's URL: migrated already, ``empty`` (the migrations run from the start), or a
        copy of the database at the URL ``copy_of`` (nothing may be connected to it)."""
        name = f"t{next(self._names)}"
        template = "template0" if empty else TEMPLATE if copy_of is None else _name(copy_of)
        self.execute(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {_name(url)} WITH (FORCE)")

    def stop(self) -> None:
        if not self.data_dir.exists():
            return
        try:
            self._pg_ctl("stop", "-m", "immediate", "-w")
        finally:
            self._remove()

    def _remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


_session: list[PgCluster] = []


def catalog_url(kind: str, *, empty: bool = False) -> str | None:
    """A fresh catalog of ``kind`` for a test: ``sqlite`` gives None (the data directory's own file),
    ``postgresql`` a new database on the session's cluster (started on first use). Skips the test with
    :data:`INSTALL_HINT` when there are no PostgreSQL binaries."""
    if kind == "sqlite":
        return None
    if kind != "postgresql":
        raise ValueError(f"unknown catalog kind {kind!r}")
    if not _session:
        import pytest

        if pg_bin_dir() is None:
            pytest.skip(INSTALL_HINT)
        _session.append(PgCluster.start())
    return _session[0].new_database(empty=empty)


def copy_catalog(url: str) -> str:
    """A new database on the session's cluster, a copy of the one at ``url`` (closed by its users)."""
    return _session[0].new_database(copy_of=url)


def drop_catalog(url: str | None) -> None:
    """Drop a database :func:`catalog_url` made (nothing for SQLite)."""
    if url is not None and _session:
        _session[0].drop_database(url)


def stop_session_cluster() -> None:
    while _session:
        _session.pop().stop()
