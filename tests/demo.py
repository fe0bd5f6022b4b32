"""`make demo`: the main job end to end on an embedded loopback registry.

Starts Debian's docker-registry on a free loopback port, pushes a fixture image into it with
skopeo, pulls it back into an OCI layout, writes a second layout with mirror, checks both with
`mirror layout verify`, shows that skopeo reads what mirror wrote, and stops the registry.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from tests.support.layouts import copy_image
from tests.support.registry import start_registry
from tests.support.tools import FIXTURES, mirror, skopeo


def step(text: str) -> None:
    """Print a demo step heading."""
    print(f"\n== {text}", flush=True)


def show(*args: str) -> None:
    """Run `mirror ARGS`, echo the command and its output, stop on failure."""
    print("$ mirror " + " ".join(args), flush=True)
    result = mirror(*args)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"demo failed: mirror {' '.join(args)} exited {result.returncode}")


def main() -> None:
    """Run the demo in a temporary directory."""
    work = Path(tempfile.mkdtemp(prefix="mirror-demo-"))
    registry = start_registry(work / "registry")
    try:
        step(f"registry running at {registry.host}")
        target = registry.push_fixture("multi-arch", "demo/app")
        print(f"pushed fixtures/layouts/multi-arch as {target} (skopeo)")

        step("skopeo pulls it into an OCI layout; mirror reads and verifies that layout")
        pulled = work / "pulled"
        skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{target}", f"oci:{pulled}:v1")
        show("layout", "ls", str(pulled))
        show("layout", "verify", str(pulled))

        step("mirror writes a layout of its own (crash-safe) and skopeo reads it")
        written = work / "written"
        for name in ("oci-single", "multi-arch", "artifact"):
            asyncio.run(copy_image(FIXTURES / name, "v1", written, name))
        show("layout", "ls", str(written))
        raw = skopeo("inspect", "--raw", f"oci:{written}:multi-arch").stdout
        print(f"skopeo inspect --raw oci:{written}:multi-arch -> {len(raw)} bytes of index")
        show("--json", "layout", "verify", str(written))
        show("layout", "gc", "--dry-run", str(written))
        print("\ndemo ok")
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
