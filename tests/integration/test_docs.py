"""Every example in README.md and docs/ (air-gap, sync, acr, serve), run as written (issue 13).

The documented hosts stand for loopback services: `registry.example.com`, `a.example.com`,
`docker.io` and `127.0.0.1:5000` for one real registry; `mirror.internal:5000`,
`b.example.com` and `elsewhere` for another; `myreg.azurecr.io` for the scripted ACR. The
blocks of one file run in order in one working directory, as a reader would type them; skopeo
is told that the stand-ins speak plain HTTP, as a registries.conf would tell it.
"""

from __future__ import annotations

import ast
import asyncio
import datetime
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import mirror
from tests.support.acr import FakeCredential, ScriptedAcr
from tests.support.certs import make_tls_files
from tests.support.docs import Block, blocks, commands, matches
from tests.support.registry import Registry, free_port, start_registry
from tests.support.scripted import StorageServer, address, serve
from tests.support.tools import FIXTURES, REPO, fixture_digest, require

README = REPO / "README.md"
AIR_GAP = REPO / "docs" / "air-gap.md"


@pytest.fixture
async def acr(registry: Registry) -> AsyncIterator[ScriptedAcr]:
    """A scripted ACR whose repository `app` holds five dated manifests, anyone may manage."""
    storage = StorageServer(registry.host)
    storage_runner = await serve(storage.app(), host="127.0.0.2")
    server = ScriptedAcr(registry.host, address(storage_runner))
    day = datetime.date(2024, 1, 1)
    server.add_repository(
        "app",
        [
            (f"sha256:{str(i) * 64}", f"{day + datetime.timedelta(days=i)}T00:00:00Z", tags)
            for i, tags in enumerate([["old"], ["1.0"], ["1.1"], ["1.2"], ["1.4", "latest"]])
        ],
    )
    server.anonymous_actions = frozenset({"pull", "metadata_read", "metadata_write", "delete"})
    runner = await serve(server.app())
    server.host = address(runner)
    yield server
    await runner.cleanup()
    await storage_runner.cleanup()


class World:
    """The documented hosts mapped to loopback services, and a place to run commands."""

    def __init__(self, first: Registry, second: Registry, acr: ScriptedAcr, cwd: Path) -> None:
        self.cwd = cwd
        self.hosts = {
            "https://myreg.azurecr.io": f"http://{acr.host}",
            "myreg.azurecr.io": acr.host,
            "mirror.internal:5000": second.host,
            "registry.example.com": first.host,
            "127.0.0.1:5000": first.host,
            "a.example.com": first.host,
            "b.example.com": second.host,
            "docker.io": first.host,
            "elsewhere": second.host,
        }
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "REG_USER": "mirror-reader",  # the documented credentials variables
            "REG_PASS": "not-needed-by-the-stand-in",
        }
        # a service's metrics port on every interface: a loopback port of the test's here
        self.hosts["0.0.0.0:9090"] = f"127.0.0.1:{free_port()}"
        #: `mirror serve` processes a page started, by the address they listen on
        self.servers: dict[str, asyncio.subprocess.Process] = {}
        # the documented folders: a backup volume and a mounted configuration
        for folder, stand_in in (("/backup/", cwd / "backup"), ("/config/", cwd)):
            self.hosts[folder] = f"{stand_in}/"

    def local(self, text: str) -> str:
        """The text with every documented host replaced by its loopback stand-in."""
        for name, host in self.hosts.items():
            text = text.replace(name, host)
        return text

    async def run(self, words: list[str]) -> subprocess.CompletedProcess[str]:
        """Run one documented command line (in a thread: the scripted services share our
        event loop)."""
        program = {"mirror": [sys.executable, "-m", "mirror"], "skopeo": [require("skopeo")]}
        argv = [*program.get(words[0], [words[0]]), *words[1:]]
        stdout, target = subprocess.PIPE, None
        if ">" in argv:  # `cmd > file`
            target = self.cwd / argv[argv.index(">") + 1]
            argv = argv[: argv.index(">")]
        result = await asyncio.to_thread(
            subprocess.run, argv, cwd=self.cwd, env=self.env, stdout=stdout,
            stderr=subprocess.PIPE, text=True, timeout=120, check=False,
        )  # fmt: skip
        if target is not None:
            target.write_text(result.stdout)
        return result

    async def shell(self, block: Block) -> None:
        """Every command of a shell block succeeds."""
        for words in commands(self.local(block.text)):
            if words[0] == "skopeo":  # the stand-ins speak plain HTTP, as registries.conf says
                flags = ["--src-tls-verify=false", "--dest-tls-verify=false"]
                if words[1] == "inspect":
                    flags = ["--tls-verify=false"] if "docker://" in block.text else []
                words = ["skopeo", "--insecure-policy", words[1], *flags, *words[2:]]
            if words[0] == "mirror" and "serve" in words:  # runs on, as in its own terminal
                await self.start_server(words)
                continue
            result = await self.run(words)
            assert result.returncode == 0, (
                f"{block.path.name}:{block.line}: {words}\n{result.stderr}"
            )

    async def start_server(self, words: list[str]) -> str:
        """Start a documented `mirror serve` (stopping the one on its address first, as a
        reader would press Ctrl-C); the URL it prints."""
        listen = words[words.index("--listen") + 1] if "--listen" in words else "127.0.0.1:5000"
        await self.stop_server(listen)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mirror", *words[1:], cwd=self.cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        if not line.startswith("serving on "):
            process.kill()
            _, err = await process.communicate()
            raise AssertionError(f"{words}: {line!r} {err.decode()}")
        self.servers[listen] = process
        return line.removeprefix("serving on ").strip()

    async def stop_server(self, listen: str) -> None:
        """SIGTERM the server on `listen`, if any: it must end with 0."""
        process = self.servers.pop(listen, None)
        if process is not None:
            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, err.decode()

    async def stop_servers(self) -> None:
        """Stop every server the page started."""
        for listen in list(self.servers):
            await self.stop_server(listen)

    async def transcript(self, block: Block) -> None:
        """`$ command` lines followed by what it prints (`…` for any run of characters)."""
        lines = self.local(block.text).splitlines()
        for i, line in enumerate(lines):
            if not line.startswith("$ "):
                continue
            expected = [e for e in lines[i + 1 :] if e][:1]
            result = await self.run(commands(line[2:])[0])
            shown = (result.stdout + result.stderr).strip().splitlines()
            assert result.returncode != 0, line
            assert len(shown) == 1, shown
            assert matches(expected[0], shown[0]), (expected[0], shown[0])

    async def container(self, block: Block) -> None:
        """A Kubernetes manifest: its container's command runs (every index of an indexed
        Job), with the image's entrypoint `mirror` and its volumes as stand-in folders."""
        text = self.local(block.text)
        found = dict(re.findall(r"^\s*(command|args):\s*(\[.*\])\s*$", text, re.M))
        command = json.loads(found.get("command", '["mirror"]'))
        args = json.loads(found["args"])
        if re.search(r"^kind: Deployment$", text, re.M):
            await self.service([*command, *args], text)
            return
        count = re.search(r"completions:\s*(\d+)", text)
        for index in range(int(count.group(1)) if count else 1):
            self.env["JOB_COMPLETION_INDEX"] = str(index)
            result = await self.run([*command, *args])
            assert result.returncode == 0, f"{block.path.name}:{block.line}: {result.stderr}"

    async def service(self, argv: list[str], text: str) -> None:
        """A Deployment's long-running command: it starts, its first run ends, its liveness
        probe answers 200, and SIGTERM stops it with exit 0."""
        probe = re.search(r"httpGet:\s*\{path:\s*(\S+),\s*port:\s*(\d+)", text)
        assert probe is not None, "a Deployment without a liveness probe"
        if "serve" in argv:  # a registry: it listens, its probe answers, SIGTERM ends it
            url = await self.start_server(argv)
            ssl = False  # a kubelet's HTTPS probe does not verify the certificate
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{url}{probe.group(1)}", ssl=ssl) as reply,
            ):
                assert reply.status == 200, await reply.text()
            await self.stop_servers()
            return
        program = {"mirror": [sys.executable, "-m", "mirror"]}
        process = await asyncio.create_subprocess_exec(
            *program.get(argv[0], [argv[0]]), *argv[1:], cwd=self.cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            first_run = json.loads(await asyncio.wait_for(process.stdout.readline(), 120))
            assert "failed" not in first_run["summary"], first_run
            url = f"http://{self.hosts['0.0.0.0:' + probe.group(2)]}{probe.group(1)}"
            async with aiohttp.ClientSession() as session, session.get(url) as reply:
                assert reply.status == 200, await reply.text()
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 60) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def python(self, block: Block, namespace: dict[str, Any]) -> None:
        """A Python block runs (top-level `await` and `async with` allowed), in the one
        namespace of its page: a sample may use what an earlier one imported."""
        # the README's asyncio.run(main()) would start a loop inside ours: await main() here
        source = self.local(block.text).replace("asyncio.run(main())", "await main()")
        code = compile(
            source, f"{block.path.name}:{block.line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        result = eval(code, namespace)  # noqa: S307 - the docs' own examples
        if inspect.iscoroutine(result):
            await result


async def _seed(registry: Registry, images: dict[str, str]) -> None:
    for target, fixture in images.items():
        await mirror.copy(f"oci:{FIXTURES / fixture}:v1", f"docker://{registry.host}/{target}")


async def _run_all(path: Path, world: World, names: dict[str, Any]) -> list[Block]:
    done = []
    namespace: dict[str, Any] = {"__name__": "__doc_example__", **names}
    page = blocks(path)
    for block in page:  # the configurations the page's commands read, written first
        if block.file:
            (world.cwd / block.file).write_text(world.local(block.text))
    for block in page:
        if block.file:
            done.append(block)
            continue
        if block.run_by:
            assert (REPO / block.run_by).exists(), f"{path.name}:{block.line}: {block.run_by}"
            continue
        if block.lang == "sh":
            await world.shell(block)
        elif block.lang == "python":
            cwd = Path.cwd()
            os.chdir(world.cwd)
            try:
                await world.python(block, namespace)
            finally:
                os.chdir(cwd)
        elif block.lang == "text":
            await world.transcript(block)
        elif block.lang == "yaml":
            await world.container(block)
        else:
            pytest.fail(f"{path.name}:{block.line}: no way to run a {block.lang!r} block")
        done.append(block)
    return done


async def test_every_readme_example_runs_as_written(
    registry: Registry, second_registry: Registry, acr: ScriptedAcr, tmp_path: Path
) -> None:
    await _seed(
        registry,
        {
            "app:1.4": "oci-single",
            "multi:1.0": "multi-arch",
            "api:1.4": "oci-single",
            "api:1.5": "docker-v2",
            "web:2.0": "multi-arch",
        },
    )
    cwd = tmp_path / "work"
    cwd.mkdir()
    world = World(registry, second_registry, acr, cwd)
    (cwd / "mirror.toml").write_text(
        world.local(
            '[[jobs]]\nsource = "registry.example.com/app"\n'
            'destination = "mirror.internal:5000/synced"\n'
        )
    )
    broken = cwd / "broken"  # the transcript's layout: one blob of an image gone
    shutil.copytree(FIXTURES / "multi-arch", broken)
    next((broken / "blobs" / "sha256").glob("3c01*")).unlink()
    done = await _run_all(README, world, {"credential": None})
    assert {b.lang for b in done} == {"sh", "python", "text"}


async def test_every_air_gap_example_runs_as_written(
    registry: Registry, second_registry: Registry, acr: ScriptedAcr, tmp_path: Path
) -> None:
    await _seed(
        registry,
        {
            "team/api:1.4": "oci-single",
            "team/api:1.5": "docker-v2",
            "team/web:2.0": "multi-arch",
            "library/nginx:1.27": "oci-single",
            "app:1.0": "oci-single",
        },
    )
    cwd = tmp_path / "work"
    cwd.mkdir()
    done = await _run_all(AIR_GAP, World(registry, second_registry, acr, cwd), {})
    assert {b.lang for b in done} == {"sh", "toml"}


@pytest.fixture
def fresh_registries(tmp_path: Path) -> Iterator[tuple[Registry, Registry]]:
    """Two registries of this test's own: sync.md mirrors whole registries and deletes."""
    first, second = start_registry(tmp_path / "reg-a"), start_registry(tmp_path / "reg-b")
    yield first, second
    first.stop()
    second.stop()


async def test_every_sync_example_runs_as_written(
    fresh_registries: tuple[Registry, Registry], acr: ScriptedAcr, tmp_path: Path
) -> None:
    registry, second_registry = fresh_registries
    await _seed(
        registry,
        {
            "team/api:v1.4.0": "oci-single",
            "team/api:v1.5.0": "docker-v2",
            "team/api:v2.0.0-rc1": "multi-arch",
            "team/api:v3.0.0": "artifact",
            "team/scratch-x:v1": "oci-single",
        },
    )
    cwd = tmp_path / "work"
    cwd.mkdir()
    world = World(registry, second_registry, acr, cwd)
    world.hosts["sha256:…"] = fixture_digest("docker-v2")
    world.hosts["restored.internal:5000"] = second_registry.host
    ca, _, _ = make_tls_files(tmp_path / "ca")  # the documented private CA, in its place
    world.hosts["/etc/ssl/private-ca.pem"] = str(ca)
    done = await _run_all(REPO / "docs" / "sync.md", world, {})
    assert {b.lang for b in done} == {"sh", "toml", "yaml", "python"}
    assert (cwd / "backup" / "registry" / "index.json").exists()


async def test_every_acr_example_runs_as_written(
    registry: Registry,
    second_registry: Registry,
    acr: ScriptedAcr,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/acr.md against the scripted ACR: `DefaultAzureCredential` and `credential` stand
    for an Azure AD credential the scripted service accepts; `sha256:…` for the digest of
    `hello-world:v1` there."""
    import azure.identity.aio

    await _seed(
        registry,
        {"hello-world:latest": "oci-single", "hello-world:v1": "docker-v2",
         "library/hello-world:latest": "oci-single", "library/hello-world:v1": "oci-single"},
    )  # fmt: skip
    latest = fixture_digest("oci-single")
    v1 = fixture_digest("docker-v2")
    for name, tags in (("hello-world", {"latest": latest, "v1": v1}),
                       ("library/hello-world", {"latest": latest, "v1": latest})):  # fmt: skip
        acr.add_repository(
            name,
            [(digest, f"2024-03-0{i + 1}T00:00:00Z", [t for t, d in tags.items() if d == digest])
             for i, digest in enumerate(dict.fromkeys(tags.values()))],
        )  # fmt: skip
    acr.anonymous_actions = acr.anonymous_actions | {"*"}
    monkeypatch.setattr(azure.identity.aio, "DefaultAzureCredential", FakeCredential)
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "layer.tar").write_bytes(b"a layer's bytes\n" * 64)
    world = World(registry, second_registry, acr, cwd)
    world.hosts["sha256:…"] = v1
    done = await _run_all(REPO / "docs" / "acr.md", world, {"credential": FakeCredential()})
    assert {b.lang for b in done} == {"sh", "python"}
    assert (cwd / "manifest.json").exists()  # the download example wrote what it fetched


async def test_every_serve_example_runs_as_written(
    registry: Registry, second_registry: Registry, acr: ScriptedAcr, tmp_path: Path
) -> None:
    """docs/serve.md: `registry.airgap:5000` and `0.0.0.0:5000` stand for one loopback port
    the documented `mirror serve` listens on; the Deployment's volumes are folders of the
    test's; the TLS files are a throwaway CA's for 127.0.0.1."""
    await _seed(registry, {"team/api:1.4": "oci-single", "team/web:2.0": "multi-arch"})
    cwd = tmp_path / "work"
    cwd.mkdir()
    world = World(registry, second_registry, acr, cwd)
    port = free_port()
    world.hosts = {
        "registry.airgap:5000": f"127.0.0.1:{port}",
        "0.0.0.0:5000": f"127.0.0.1:{port}",
        "/bundles/": f"{cwd}/",
        "/tls/tls.crt": str(cwd / "server.pem"),
        "/tls/tls.key": str(cwd / "server.key"),
        **world.hosts,
    }
    ca, _, _ = make_tls_files(cwd)
    (cwd / "certs.d").mkdir()
    shutil.copy(ca, cwd / "certs.d" / "ca.crt")
    try:
        done = await _run_all(REPO / "docs" / "serve.md", world, {})
    finally:
        await world.stop_servers()
    assert {b.lang for b in done} == {"sh", "text", "yaml", "toml"}
    assert (cwd / "store" / "index.json").exists()


def test_every_page_with_examples_has_its_test() -> None:
    """A new page with examples needs a test here: a doc example that is not run breaks."""
    pages = {p.relative_to(REPO) for p in [README, *(REPO / "docs").glob("*.md")] if blocks(p)}
    assert pages == {
        Path("README.md"),
        Path("docs/air-gap.md"),
        Path("docs/acr.md"),
        Path("docs/sync.md"),
        Path("docs/serve.md"),
    }
