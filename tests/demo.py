"""`make demo`: the main job end to end on an embedded loopback registry.

Starts Debian's docker-registry on a free loopback port, pushes a fixture image into it with
skopeo, pulls it into an OCI layout with mirror, pushes that layout to another repository,
inspects the result, carries it through an air-gap bundle, backs it up with a sync (twice:
the second run is a no-op), checks that every digest matches, and stops the registry. Its
state (blob locations, upload sessions) stays in its temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.support.registry import start_registry
from tests.support.tools import mirror, skopeo


def step(text: str) -> None:
    """Print a demo step heading."""
    print(f"\n== {text}", flush=True)


def show(*args: str) -> str:
    """Run `mirror ARGS`, echo the command and its output, stop on failure; return stdout."""
    print("$ mirror " + " ".join(args), flush=True)
    result = mirror(*args)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"demo failed: mirror {' '.join(args)} exited {result.returncode}")
    return result.stdout


def digest_of(ref: str) -> str:
    """The digest mirror reports for `ref` (quietly)."""
    result = mirror("--json", "inspect", ref)
    if result.returncode != 0:
        raise SystemExit(f"demo failed: {result.stderr.strip()}")
    return str(json.loads(result.stdout)["digest"])


def main() -> None:
    """Run the demo in a temporary directory."""
    work = Path(tempfile.mkdtemp(prefix="mirror-demo-"))
    # the throwaway registry's blob locations and upload sessions go with it, not into the
    # user's own state folder (every mirror the demo runs inherits this)
    os.environ["XDG_STATE_HOME"] = str(work / "state")
    registry = start_registry(work / "registry")
    try:
        host = registry.host
        step(f"registry running at {host}; skopeo pushes a two-platform image into it")
        target = registry.push_fixture("multi-arch", "demo/app")
        original = digest_of(target)

        step("mirror pulls it into an OCI layout (every byte verified)")
        layout = work / "layout"
        show("pull", target, str(layout))
        show("layout", "ls", str(layout))
        show("layout", "verify", str(layout))

        step("mirror pushes the layout to another repository, then copies registry to registry")
        show("push", f"{layout}:v1", f"{host}/demo/copy:v1")
        show("copy", f"docker://{host}/demo/copy:v1", f"docker://{host}/demo/mounted:v1")
        show("copy", f"docker://{host}/demo/copy:v1", f"docker://{host}/demo/mounted:v1")

        step("inspect the copy; list tags and repositories")
        show("inspect", f"{host}/demo/copy:v1")
        show("tags", f"{host}/demo/copy")
        show("ls", host)

        step("an air-gap bundle: create, verify, push under another prefix")
        bundle = work / "week1.tar.zst"
        show("bundle", "create", str(bundle), f"{host}/demo/app:v1", f"{host}/demo/copy:v1")
        show("bundle", "verify", str(bundle))
        show("bundle", "push", str(bundle), f"{host}/airgap")

        step("a declarative sync, run twice: the second run requests nothing it has")
        config = work / "sync.toml"
        config.write_text(
            f'[registries."{host}"]\nplain_http = true\n'
            f'[[jobs]]\nsource = "{host}/demo/app"\ndestination = "oci:{work / "backup"}"\n'
        )
        show("sync", str(config))
        show("sync", str(config))

        step("every digest matches the original")
        digests = {
            "pushed by skopeo": original,
            "pulled by mirror": digest_of(f"oci:{layout}:v1"),
            "pushed by mirror": digest_of(f"{host}/demo/copy:v1"),
            "through a bundle": digest_of(f"{host}/airgap/demo/app:v1"),
            "backed up by sync": digest_of(f"oci:{work / 'backup'}:demo/app:v1"),
            "read by skopeo": skopeo(
                "inspect",
                "--tls-verify=false",
                "--format",
                "{{.Digest}}",
                f"docker://{host}/demo/mounted:v1",
            ).stdout.strip(),
        }
        for what, digest in digests.items():
            print(f"{what:>17}: {digest}")
        if len(set(digests.values())) != 1:
            raise SystemExit("demo failed: digests differ")
        print("\ndemo ok: all digests equal")
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
