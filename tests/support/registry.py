"""A real CNCF distribution registry (Debian's docker-registry) on a free loopback port."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.tools import FIXTURES, require, skopeo


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    """A running registry: `host` is `127.0.0.1:PORT`, storage under `root`."""

    host: str
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """Base URL of the registry API."""
        return f"http://{self.host}"

    def push_fixture(self, fixture: str, repository: str, tag: str = "v1") -> str:
        """Push a committed fixture layout with skopeo; return `host/repository:tag`."""
        target = f"{self.host}/{repository}:{tag}"
        skopeo(
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            f"oci:{FIXTURES / fixture}:v1",
            f"docker://{target}",
        )
        return target

    def stop(self) -> None:
        """Terminate the registry process."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
{storage_extra}http:
  addr: {host}
{http_extra}{extra}
"""


def start_registry(
    workdir: Path,
    extra: str = "",
    bind: str = "127.0.0.1",
    storage_extra: str = "",
    tls: tuple[Path, Path] | None = None,
) -> Registry:
    """Start docker-registry with its own storage under `workdir`; wait until it answers."""
    binary = require("docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    host = f"{bind}:{free_port(bind)}"
    config = workdir / "config.yml"
    config.write_text(
        CONFIG.format(
            root=workdir / "storage",
            host=host,
            extra=extra,
            storage_extra=storage_extra,
            http_extra=f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "",
        )
    )
    log = open(workdir / "registry.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {(workdir / 'registry.log').read_text()}")
        try:
            scheme = "https" if tls else "http"
            context = ssl._create_unverified_context() if tls else None  # noqa: S323 - readiness only
            with urllib.request.urlopen(  # noqa: S310 - loopback test registry
                f"{scheme}://{host}/v2/", timeout=1, context=context
            ) as reply:
                if reply.status in (200, 401):
                    return Registry(host, workdir, process)
        except OSError as exc:
            if getattr(exc, "code", None) == 401:
                return Registry(host, workdir, process)
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("docker-registry did not start within 20 s")
