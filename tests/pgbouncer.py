"""A throwaway PgBouncer in transaction mode, like Azure's built-in one (port 6432).

Debian's ``pgbouncer`` binary (``.ci/run`` installs it when missing), started on a free
loopback port with its own configuration in a temporary directory, in front of one
PostgreSQL server, and stopped after. Used by ``tests/api/test_pooler.py`` and
``bench/tenancy_overhead.py --pooler``.

Authentication is ``trust`` (the suite's server trusts loopback logins too); the roles
that may log in are listed in the ``auth_file``, as PgBouncer requires. The pool is small
(``pool_size`` server connections per database and role) so that clients really share
server connections: a transaction of one client runs on whichever server connection is
free, and the next one of the same client usually on another.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.ports import free_port


def binary() -> str | None:
    """Debian's pgbouncer (``/usr/sbin`` is not on every user's PATH)."""
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).is_file()), None)


def _unprivileged_user() -> str:
    """Debian's ``postgres`` user where the server package made one, else ``nobody``."""
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user (postgres, nobody) to run pgbouncer as")


def _server_host(server_url: str) -> str:
    """The server's host, or the socket directory of a Unix-socket URL (``?host=/dir``)."""
    url = make_url(server_url)
    socket_dir = url.query.get("host")
    if isinstance(socket_dir, tuple):
        socket_dir = socket_dir[0]
    return url.host or socket_dir or "127.0.0.1"


@dataclass(frozen=True)
class Bouncer:
    host: str
    port: int
    directory: Path
    pid: int

    def url(self, database_url: str, *, username: str | None = None,
            password: str | None = None) -> str:
        """``database_url`` (a URL of the server behind) pointed at this PgBouncer."""
        url = make_url(database_url).difference_update_query(["host"]).set(
            host=self.host, port=self.port)
        if username is not None:
            url = url.set(username=username, password=password)
        return url.render_as_string(hide_password=False)

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def pgbouncer(server_url: str, roles: Sequence[str], *, pool_size: int = 3,
              max_client_conn: int = 200) -> Iterator[Bouncer]:
    """Run PgBouncer in transaction mode in front of ``server_url``'s server.

    Every database of that server is reachable through it by name; ``roles`` may log in.
    """
    exe = binary()
    if exe is None:
        raise RuntimeError("Debian's pgbouncer is not installed (apt-get install pgbouncer)")
    server = make_url(server_url)
    root = Path(tempfile.mkdtemp(prefix="clinai-pgbouncer-"))
    port = free_port()
    users = "".join(f'"{role}" ""\n' for role in roles)
    (root / "userlist.txt").write_text(users)
    # PgBouncer refuses to run as root: as root it changes to an unprivileged user.
    run_as = _unprivileged_user() if os.geteuid() == 0 else None
    as_user = f"user = {run_as}\n" if run_as else ""
    (root / "pgbouncer.ini").write_text(f"""\
[databases]
* = host={_server_host(server_url)} port={server.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root / "userlist.txt"}
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = {max_client_conn}
max_db_connections = 0
server_lifetime = 3600
server_idle_timeout = 60
query_wait_timeout = 30
logfile = {root / "pgbouncer.log"}
pidfile = {root / "pgbouncer.pid"}
log_connections = 0
log_disconnections = 0
{as_user}""")
    if run_as:
        shutil.chown(root, user=run_as)
        for name in ("userlist.txt", "pgbouncer.ini"):
            shutil.chown(root / name, user=run_as)
    # Fixed binary and arguments; nothing comes from input.
    stderr = (root / "stderr.log").open("wb")
    proc = subprocess.Popen([exe, "-q", str(root / "pgbouncer.ini")],  # noqa: S603
                            stdout=subprocess.DEVNULL, stderr=stderr)
    bouncer = Bouncer("127.0.0.1", port, root, proc.pid)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                err = (root / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"pgbouncer exited ({proc.returncode}): {err}"
                                   f"{bouncer.log()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("pgbouncer did not listen within 10 s:\n"
                                       + bouncer.log()) from None
                time.sleep(0.05)
        yield bouncer
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr.close()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def late_flush_proxy(port: int, delay: float = 0.05) -> Iterator[int]:
    """A loopback TCP proxy to ``port`` that holds back a client's Flush message sent at
    the end of a write by ``delay`` seconds: a busy client process (the GIL) writes it a
    little later, which makes PgBouncer's handling of a late Flush repeatable. Yields the
    proxy's port."""
    flush = b"H\x00\x00\x00\x04"
    listener = socket.create_server(("127.0.0.1", 0))
    sockets: list[socket.socket] = [listener]

    def pump(source: socket.socket, target: socket.socket, hold_flush: bool) -> None:
        try:
            while data := source.recv(65536):
                if hold_flush and data.endswith(flush):
                    if len(data) > len(flush):
                        target.sendall(data[:-len(flush)])
                    time.sleep(delay)
                    data = flush
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", port))
            sockets.extend((client, server))
            threading.Thread(target=pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=pump, args=(server, client, False), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        for sock in sockets:
            sock.close()
