"""A RabbitMQ node of the tests' own, for the drills that crash it: its own
node name, AMQP and distribution ports, data and log directories, config and
plugin files (none: no management listener), so it never touches the
machine's shared node. Started with the server script itself (as root the
packaged wrapper would switch to the rabbitmq user, who cannot write here)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

_PACKAGED = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
_START_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_script() -> str | None:
    return str(_PACKAGED) if _PACKAGED.exists() else shutil.which("rabbitmq-server")


class PrivateNode:
    def __init__(self, base: Path, script: str) -> None:
        self.base = base
        self.script = script
        self.port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.name = f"infergate-test-{uuid.uuid4().hex[:8]}@localhost"
        for folder in ("mnesia", "log"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text("loopback_users = none\n")
        (base / "rabbitmq-env.conf").write_text("")
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (again, on the same data) and wait until it takes connections."""
        with (self.base / "log" / "console.log").open("ab") as log:
            self._process = subprocess.Popen(
                [self.script], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + _START_S
        while not (self._listening() and (self.base / "node.pid").exists()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.crash()
                tail = (self.base / "log" / "console.log").read_text()[-2000:]
                raise RuntimeError(f"the private RabbitMQ node did not start:\n{tail}")
            time.sleep(0.2)

    def ctl(self, *args: str) -> str:
        """rabbitmqctl against this node (its output)."""
        ctl = str(Path(self.script).with_name("rabbitmqctl"))
        done = subprocess.run(
            [ctl, "-n", self.name, *args], env=self.env, capture_output=True, text=True, timeout=30
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr[-1000:]}")
        return done.stdout

    def stop(self) -> None:
        """A graceful stop (SIGTERM)."""
        self._end(signal.SIGTERM)

    def crash(self) -> None:
        """SIGKILL its Erlang VM (nothing flushed, nothing said goodbye)."""
        self._end(signal.SIGKILL)

    def _end(self, how: signal.Signals) -> None:
        if self._process is None:
            return
        pid_file = self.base / "node.pid"
        if pid_file.exists() and self._process.poll() is None:
            try:
                os.kill(int(pid_file.read_text().strip()), how)
            except (ProcessLookupError, ValueError):
                pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        pid_file.unlink(missing_ok=True)
        self._process = None

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False
