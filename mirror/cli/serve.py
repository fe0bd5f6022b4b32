"""`mirror serve SOURCE...`: layouts, archives and bundles served in place as a registry.

The server is imported when the command runs: help and usage errors come back at once."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from mirror.cli.output import Terminated, options, run

__all__ = ["serve_command"]


def _listen(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 host in brackets) as a host and a port."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    return host, int(port)


@click.command("serve")
@click.argument("sources", nargs=-1, metavar="SOURCE...")
@click.option(
    "--listen",
    default="127.0.0.1:5000",
    show_default=True,
    callback=_listen,
    metavar="HOST:PORT",
    help="Where to listen (0.0.0.0:5000 for every interface; port 0 picks a free one).",
)
@click.option(
    "--repository",
    metavar="NAME",
    help="The repository the plain tags (v1, not repo:v1) of the sources are served under.",
)
@click.option(
    "--writable",
    metavar="oci:DIR",
    help="Take pushes into this OCI layout (also served), beside any sync writing it.",
)
@click.option("--allow-delete", is_flag=True, help="With --writable: answer DELETE.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="TLS certificate.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="TLS private key.")
@click.option(
    "--htpasswd",
    type=click.Path(dir_okay=False, exists=True),
    help="Ask for basic auth, checked against this htpasswd file (bcrypt entries).",
)
def serve_command(
    sources: tuple[str, ...],
    listen: tuple[str, int],
    repository: str | None,
    writable: str | None,
    allow_delete: bool,
    tls_cert: str | None,
    tls_key: str | None,
    htpasswd: str | None,
) -> None:
    """Serve layouts (oci:DIR), archives (oci-archive:FILE) and bundles (FILE.tar) as a
    registry, in place, until SIGTERM or Ctrl-C.

    See docs/serve.md."""
    if not sources and writable is None:
        raise click.UsageError("name a SOURCE to serve, or --writable oci:DIR")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if allow_delete and writable is None:
        raise click.UsageError("--allow-delete needs --writable")
    from mirror.serve.main import ServeRequest, serve

    request = ServeRequest(
        sources=list(sources),
        host=listen[0],
        port=listen[1],
        repository=repository,
        writable=writable,
        allow_delete=allow_delete,
        tls_cert=Path(tls_cert) if tls_cert else None,
        tls_key=Path(tls_key) if tls_key else None,
        htpasswd=Path(htpasswd) if htpasswd else None,
        stall=options().limits.stall_timeout,
        max_blob=options().limits.max_blob_size,
    )

    def ready(url: str) -> None:
        click.echo(f"serving on {url}")
        sys.stdout.flush()

    # the requests in flight have finished: a stop asked for is a success
    with contextlib.suppress(Terminated, KeyboardInterrupt):
        run(serve(request, ready))
