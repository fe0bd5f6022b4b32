"""Container engines for interop tests: Debian's Docker (dockerd 20.10) and rootful Podman 4.3.

Both keep their files under a temporary directory of the test run: dockerd runs by hand with no
iptables, bridge or IP forwarding, its own data root, exec root (where the containerd it starts
keeps its state and sockets), pidfile, socket and JSON config (whose `deprecated-key-path` keeps
dockerd 20.10 from writing /etc/docker/key.json); podman gets its own root, runroot, tmpdir,
storage.conf, containers.conf, registries.conf, signature policy and auth file. The session fixtures
`dockerd` and `podman` start each once and give an `Engine`: call it with a command line
(`docker("images")`) or use `pull`, `push` and `repo_digests`. Registries are plain-HTTP loopback
ones (dockerd takes 127.0.0.0/8 as insecure by itself; podman is told `--tls-verify=false`). dockerd
20.10 also makes the empty /run/docker/plugins (a path it does not derive from its exec root); it is
removed again when the fixture created it. Podman 4.3 has no setting for two paths: it still reads
/etc/containers/registries.conf.d (short names, unused here: every reference is fully qualified)
and, as root, updates containers/image's blob-info cache in /var/lib/containers/cache, as skopeo
does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.tools import require

#: The docker client of Debian's docker.io, named by path: /usr/local/bin/docker may be another.
DOCKER_CLIENT = Path("/usr/bin/docker")
#: The one directory dockerd 20.10 makes outside its data and exec roots (plugin sockets).
DOCKER_PLUGIN_RUN_DIR = Path("/run/docker/plugins")
_CLIENT_ENV_DROPPED = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")


def _own_env(home: Path, **extra: str) -> dict[str, str]:
    """The test process's environment with HOME in the engine's folder and no engine settings
    of the user's (so no ~/.docker or ~/.config/containers of theirs is read)."""
    env = {k: v for k, v in os.environ.items() if k not in _CLIENT_ENV_DROPPED}
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("XDG_CONFIG_HOME", None)
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env.update(extra)
    return env


@dataclass
class Engine:
    """A ready engine client: `argv` is the binary with its global flags, `env` its
    environment, `pull_flags` what `pull` and `push` add (TLS off, the test's own policy)."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    root: Path
    pull_flags: tuple[str, ...] = ()

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run `<engine> ARGS…`; raise with its output when `check` and it fails."""
        proc = subprocess.run(
            [*self.argv, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{self.name} {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def pull(self, ref: str) -> subprocess.CompletedProcess[str]:
        """Pull `ref` (a tag or a digest reference) from a loopback registry."""
        return self("pull", *self.pull_flags, ref)

    def push(self, ref: str, *flags: str) -> subprocess.CompletedProcess[str]:
        """Push the local image `ref` to its (loopback) registry."""
        return self("push", *self.pull_flags, *flags, ref)

    def repo_digests(self, ref: str) -> list[str]:
        """The `name@digest` references the engine recorded for the local image `ref`."""
        out = self("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout
        return [str(d) for d in json.loads(out) or []]

    def image_id(self, ref: str) -> str:
        """The local image's ID: the digest of its config (`sha256:…`)."""
        found = self("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
        return found if found.startswith("sha256:") else f"sha256:{found}"


def processes_mentioning(path: Path) -> list[int]:
    """PIDs of the live processes whose command line names `path` (a daemon's own folder)."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    """Wait for `pids` to end; return those still alive after `seconds`."""
    deadline = time.monotonic() + seconds
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and _not_zombie(p)]
    return alive


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _ping(sock: Path) -> bool:
    """True when the Docker API on the unix socket `sock` answers `GET /_ping` with OK."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in s.recv(64).split(b"\r\n", 1)[0] + b" "
    except OSError:
        return False


@dataclass
class Dockerd:
    """A dockerd started by `start_dockerd`, and its client."""

    root: Path
    process: subprocess.Popen[bytes]
    client: Engine
    made_plugin_dir: bool = field(default=False)

    def stop(self) -> list[int]:
        """Stop dockerd (which stops its containerd and their shims), kill by PID whatever
        process naming our folder is left, and return the PIDs that had to be killed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        leftover = _wait_gone(processes_mentioning(self.root), 10)
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(leftover, 10)
        if self.made_plugin_dir:
            for made in (DOCKER_PLUGIN_RUN_DIR, DOCKER_PLUGIN_RUN_DIR.parent):
                try:
                    made.rmdir()  # only while empty: another daemon's state is left alone
                except OSError:
                    break
        return leftover


def start_dockerd(root: Path) -> Dockerd:
    """Start Debian's dockerd with every file it writes under `root`; wait until it answers."""
    binary = require("dockerd")
    if not DOCKER_CLIENT.exists():
        raise RuntimeError(f"{DOCKER_CLIENT} is missing: run 'make test', which installs docker.io")
    root.mkdir(parents=True, exist_ok=True)
    config = root / "daemon.json"
    config.write_text(json.dumps({"deprecated-key-path": str(root / "key.json")}))
    sock = root / "docker.sock"
    env = _own_env(root / "home", DOCKER_CONFIG=str(root / "client"))
    made_plugin_dir = not DOCKER_PLUGIN_RUN_DIR.parent.exists()
    log = open(root / "dockerd.log", "wb")  # noqa: SIM115 - lives as long as the process
    command = [
        binary,
        "--config-file", str(config),
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--pidfile", str(root / "dockerd.pid"),
        "-H", f"unix://{sock}",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",  # else it switches on the host's net.ipv4.ip_forward
        "--bridge=none",
        "--storage-driver=vfs",
        "--log-level=warn",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    client = Engine("docker", (str(DOCKER_CLIENT), "-H", f"unix://{sock}"), env, root)
    daemon = Dockerd(root, process, client, made_plugin_dir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            daemon.stop()
            raise RuntimeError(f"dockerd exited: {(root / 'dockerd.log').read_text()[-2000:]}")
        if _ping(sock):
            return daemon
        time.sleep(0.1)
    daemon.stop()
    raise RuntimeError(f"dockerd did not answer within 60 s: {(root / 'dockerd.log').read_text()}")


_REGISTRIES_CONF = 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n'
_POLICY = '{"default": [{"type": "insecureAcceptAnything"}]}\n'
_CONTAINERS_CONF = '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n'


def make_podman(root: Path) -> Engine:
    """A rootful podman client whose storage, run state, temporary files and configuration are
    all under `root` (vfs storage, cgroupfs, file events); checked with `podman info`."""
    binary = require("podman")
    conf = root / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    (conf / "registries.conf").write_text(_REGISTRIES_CONF)
    (conf / "policy.json").write_text(_POLICY)
    (conf / "containers.conf").write_text(_CONTAINERS_CONF)
    (conf / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{root / "storage"}"\nrunroot = "{root / "run"}"\n'
    )
    (conf / "auth.json").write_text('{"auths": {}}\n')
    env = _own_env(
        root / "home",
        CONTAINERS_REGISTRIES_CONF=str(conf / "registries.conf"),
        CONTAINERS_CONF=str(conf / "containers.conf"),
        CONTAINERS_STORAGE_CONF=str(conf / "storage.conf"),
        REGISTRY_AUTH_FILE=str(conf / "auth.json"),
        TMPDIR=str(root / "tmp"),
    )
    argv = (
        binary,
        "--root", str(root / "storage"),
        "--runroot", str(root / "run"),
        "--tmpdir", str(root / "tmp"),
        "--storage-driver", "vfs",
        "--cgroup-manager", "cgroupfs",
        "--events-backend", "file",
        "--network-config-dir", str(root / "networks"),
    )  # fmt: skip
    flags = ("--tls-verify=false", "--signature-policy", str(conf / "policy.json"))
    podman = Engine("podman", argv, env, root, flags)
    info = podman("info", "--format", "{{json .Store}}").stdout
    store = json.loads(info)
    for key in ("graphRoot", "runRoot"):
        if not str(store[key]).startswith(str(root)):
            raise RuntimeError(f"podman's {key} is {store[key]}, outside {root}")
    return podman


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Debian's dockerd, started once per session in its own folder; yields its client."""
    daemon = start_dockerd(tmp_path_factory.mktemp("dockerd"))
    yield daemon.client
    daemon.stop()


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Rootful podman with everything in its own folder; yields its client. Podman has no
    daemon: at the end any process still naming the folder is killed by its PID."""
    root = tmp_path_factory.mktemp("podman")
    engine = make_podman(root)
    yield engine
    leftover = processes_mentioning(root)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    _wait_gone(leftover, 10)
