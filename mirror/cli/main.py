"""The `mirror` group, and the entry point that turns errors into one line and an exit code."""

from __future__ import annotations

import importlib
import re
import sys
from typing import TYPE_CHECKING, NamedTuple

import click

from mirror._version import __version__
from mirror.cli.output import Options, Terminated, parse_size, sigterm_ends_the_command
from mirror.errors import MirrorError, UntrustedCertificate
from mirror.limits import DEFAULT_LIMITS, Limits
from mirror.support.terminal import printable

if TYPE_CHECKING:
    import logging

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_USAGE", "cli", "main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
#: 128 + the signal's number, as a shell reports a command a signal ended
EXIT_INTERRUPTED = 128 + 2
EXIT_TERMINATED = 128 + 15


class _Spec(NamedTuple):
    """Where a command is, and its summary for `mirror --help` (its docstring's first
    sentence, as click shortens it; a test keeps the two equal)."""

    module: str
    attribute: str
    summary: str


#: every command: its module is imported only when it is used, not to list it in the help
_COMMANDS = {
    "bundle": _Spec(
        "mirror.cli.bundle",
        "bundle_group",
        "Carry images across an air gap in one verifiable file (.tar or .tar.zst).",
    ),
    "copy": _Spec("mirror.cli.copy", "copy_command", "Copy an image from SOURCE to DESTINATION."),
    "delete": _Spec(
        "mirror.cli.manage",
        "delete_command",
        "Delete a tag (HOST/REPO:TAG) or a manifest with its tags (HOST/REPO@DIGEST); in a "
        "layout, a name (oci:DIR:REF) or an image with all its names (oci:DIR@DIGEST).",
    ),
    "inspect": _Spec(
        "mirror.cli.discover",
        "inspect_command",
        "Show digest, media type, platforms, layers and sizes of REFERENCE.",
    ),
    "layout": _Spec(
        "mirror.cli.layout", "layout_group", "Inspect, check and clean OCI image layouts."
    ),
    "ls": _Spec(
        "mirror.cli.discover", "ls_command", "List the repositories of REGISTRY (HOST[:PORT])."
    ),
    "manifests": _Spec(
        "mirror.cli.manage",
        "manifests_command",
        "List the manifests of REPOSITORY (HOST/REPO) with size, time and tags.",
    ),
    "props": _Spec(
        "mirror.cli.manage",
        "props_command",
        "Show (or, with --can-* flags, set) properties of a repository, tag or manifest.",
    ),
    "prune": _Spec(
        "mirror.cli.manage",
        "prune_command",
        "Keep the newest N manifests of REPOSITORY; delete the others with their tags.",
    ),
    "pull": _Spec(
        "mirror.cli.copy",
        "pull_command",
        "Pull IMAGE (HOST/REPO[:TAG][@DIGEST]) into the OCI layout DIRECTORY (also written "
        "oci:DIR[:NAME] or oci-archive:FILE[:NAME]), named by its tag unless NAME is given.",
    ),
    "push": _Spec(
        "mirror.cli.copy",
        "push_command",
        "Push an image of LAYOUT (DIR[:REF], oci:DIR[:REF] or oci-archive:FILE[:REF]) to IMAGE "
        "(HOST/REPO[:TAG][@DIGEST]).",
    ),
    "serve": _Spec(
        "mirror.cli.serve",
        "serve_command",
        "Serve layouts (oci:DIR), archives (oci-archive:FILE) and bundles (FILE.tar) as a "
        "registry, in place, until SIGTERM or Ctrl-C.",
    ),
    "sync": _Spec(
        "mirror.cli.sync",
        "sync_command",
        "Mirror the images CONFIG (TOML, see docs/sync.md) describes; exit 1 if any failed.",
    ),
    "tags": _Spec(
        "mirror.cli.discover",
        "tags_command",
        "List the tags of REPOSITORY (HOST/REPO, or oci:DIR for image names).",
    ),
}


class _Interrupted(BaseException):
    """Ctrl-C (SIGINT) ended the command: KeyboardInterrupt, carried past click."""


class _LazyGroup(click.Group):
    """The top-level group: a start-up imports only the command that runs (none for
    `mirror --help`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, sorted."""
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command called `cmd_name`, its module imported now; None if there is none."""
        spec = _COMMANDS.get(cmd_name)
        if spec is None:
            return None
        command = getattr(importlib.import_module(spec.module), spec.attribute)
        assert isinstance(command, click.Command)
        _list_global_options_in_help(command)
        return command

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; Ctrl-C passes click by as `_Interrupted` (click would print an
        empty line and call it "aborted", even into a pipe)."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The "Commands" section, from the summaries: no command module is imported."""
        limit = formatter.width - 6 - max(map(len, _COMMANDS))
        rows = [
            (name, click.Command(name, help=spec.summary).get_short_help_str(limit))
            for name, spec in _COMMANDS.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


class _HelpWithGlobalOptions(click.Context):
    """A command's context whose help ends with the global options the command accepts
    after its name (cobra's "Global Flags"), so `mirror copy --help` shows `--plain-http`."""

    def get_help(self) -> str:
        """The command's help, then a "Global options" section."""
        formatter = self.make_formatter()
        self.command.format_help(self, formatter)
        top = click.Context(cli)
        accepted = set(_hoisted_names(self.command))
        records = [
            record
            for param in cli.get_params(top)
            if isinstance(param, click.Option)
            and accepted & set(param.opts)
            and (record := param.get_help_record(top)) is not None
        ]
        with formatter.section("Global options (here or before the command)"):
            formatter.write_dl(records)
        return formatter.getvalue().rstrip("\n")


def _list_global_options_in_help(command: click.Command) -> None:
    """`command`'s help (and each of its subcommands', for a group) lists the global
    options."""
    command.context_class = _HelpWithGlobalOptions
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _list_global_options_in_help(sub)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="mirror")
@click.option("--json", "as_json", is_flag=True, help="Write JSON instead of text.")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print only errors and the data asked for (a dry run's plan).",
)
@click.option("-v", "--verbose", count=True, help="More detail (repeat for more).")
@click.option(
    "--creds",
    metavar="[HOST=]USER:PASSWORD",
    multiple=True,
    help="Credentials for the one registry the command names, or for HOST (repeatable).",
)
@click.option(
    "--token-host",
    "token_hosts",
    metavar="HOST",
    multiple=True,
    help="Trust HOST as a token realm for credentials, besides each registry's own site.",
)
@click.option("--plain-http", is_flag=True, help="Speak HTTP, not HTTPS, to the registries named.")
@click.option(
    "--tls-verify/--no-tls-verify",
    default=True,
    help="Verify TLS certificates of the registries named (default: on).",
)
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True), help="Extra CA bundle.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=16,
    show_default=True,
    help="Blobs transferred at once.",
)
@click.option(
    "--no-blob-cache",
    "no_blob_cache",
    is_flag=True,
    help="Do not remember across runs where blobs are (mounts come from this run's only).",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 100),
    default=Options.retries,  # mirror.retry's DEFAULT_RETRIES, without importing tenacity
    show_default=True,
    help="Retries of a failing request (resets, 408, 429, 5xx), with backoff.",
)
@click.option(
    "--chunk-size",
    callback=parse_size,
    default="16MiB",
    show_default=True,
    help="Upload chunk size for large blobs (PATCH); e.g. 8MiB.",
)
@click.option(
    "--anonymous", is_flag=True, help="No credentials, not even Azure AD for ACR registries."
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 86400),
    default=None,
    help="Seconds to wait for a connection or for a reply to move: sets both "
    "--connect-timeout and --stall-timeout.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(0.1, 3600),
    default=DEFAULT_LIMITS.connect_timeout,
    show_default=True,
    help="Seconds to open a connection to a registry.",
)
@click.option(
    "--stall-timeout",
    type=click.FloatRange(0.1, 86400),
    default=DEFAULT_LIMITS.stall_timeout,
    show_default=True,
    help="Seconds a reply may wait for its first byte, or move less than --min-rate.",
)
@click.option(
    "--min-rate",
    callback=parse_size,
    default="1KiB",
    show_default=True,
    help="Bytes per second below which a transfer is stalled (e.g. 512, 4KiB).",
)
@click.option(
    "--max-blob-size",
    callback=parse_size,
    default="1TiB",
    show_default=True,
    help="Refuse images that declare a larger blob (e.g. 2TiB).",
)
@click.option(
    "--azure-cloud",
    type=click.Choice(["public", "china", "usgov"]),
    default=None,
    help="Azure cloud for ACR sign-in (authority and audience); default: by login server.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    as_json: bool,
    quiet: bool,
    verbose: int,
    creds: tuple[str, ...],
    token_hosts: tuple[str, ...],
    plain_http: bool,
    tls_verify: bool,
    ca_file: str | None,
    concurrency: int,
    no_blob_cache: bool,
    retries: int,
    chunk_size: int,
    anonymous: bool,
    timeout: float | None,
    connect_timeout: float,
    stall_timeout: float,
    min_rate: int,
    max_blob_size: int,
    azure_cloud: str | None,
) -> None:
    """Move OCI images between registries, OCI layouts and archives, verifying every byte."""
    _log_to_stderr(verbose)
    ctx.obj = Options(
        as_json=as_json,
        quiet=quiet,
        verbose=verbose,
        creds=creds,
        token_hosts=token_hosts,
        plain_http=plain_http,
        tls_verify=tls_verify,
        ca_file=ca_file,
        concurrency=concurrency,
        retries=retries,
        blob_cache=not no_blob_cache,
        chunk_size=chunk_size,
        anonymous=anonymous,
        azure_cloud=azure_cloud,
        limits=Limits(
            connect_timeout=timeout or connect_timeout,
            stall_timeout=timeout or stall_timeout,
            min_rate=min_rate,
            max_blob_size=max_blob_size,
        ),
    )


#: the handler `_log_to_stderr` installed (replaced when `main` runs again in one process)
_handler: list[logging.Handler] = []


def _log_to_stderr(verbose: int) -> None:
    """mirror's log on stderr with its `mirror:` prefix, control characters escaped (a log
    may quote what a registry sent): warnings always, more with -v. logging is imported
    here: help and usage errors never get this far."""
    import logging

    class PrintableFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return printable(super().format(record))

    logger = logging.getLogger("mirror")
    for old in _handler:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("mirror: %(levelname)s: %(message)s"))
    _handler[:] = [handler]
    logger.addHandler(handler)
    levels = {0: logging.WARNING, 1: logging.INFO}
    logger.setLevel(levels.get(verbose, logging.DEBUG))


_NOT_HOISTED = frozenset({"-h", "--help", "--version"})


def _option_names(command: click.Command) -> dict[str, bool]:
    """Each option name of `command`, and whether it takes a value."""
    names: dict[str, bool] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                names[name] = not param.is_flag and not param.count
    return names


def hoist_global_options(argv: list[str]) -> list[str]:
    """Global options given after the command moved before it, so that `mirror copy
    --plain-http A B` and `mirror layout --json ls DIR` mean `mirror --plain-http copy A B`
    and `mirror --json layout ls DIR` (skopeo and crane users put options after the verb).
    An option the command (or group) where it stands has itself (`ls --json`) stays there."""
    globals_ = _option_names(cli)
    start = 0
    while start < len(argv) and argv[start].startswith("-"):
        name = argv[start].split("=", 1)[0]
        start += 2 if globals_.get(name) and "=" not in argv[start] else 1
    moved: list[str] = []
    kept: list[str] = []
    words = argv[start:]
    command: click.Command | None = cli
    own: dict[str, bool] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            kept.extend(words[i:])
            break
        if not word.startswith("-") or word == "-":
            if isinstance(command, click.Group):  # the next command down, through groups
                command = command.get_command(click.Context(cli), word)
                own = _option_names(command) if command is not None else {}
            kept.append(word)
            i += 1
            continue
        name = "-v" if re.fullmatch(r"-v+", word) else word.split("=", 1)[0]
        if name in own:  # the command's own option, with its value
            takes = own[name] and "=" not in word
            kept.extend(words[i : i + 2] if takes else [word])
            i += 2 if takes else 1
            continue
        if name in globals_ and name not in _NOT_HOISTED:
            takes = globals_[name] and "=" not in word
            moved.extend(words[i : i + 2] if takes else [word])
            i += 2 if takes else 1
            continue
        kept.append(word)
        i += 1
    return argv[:start] + moved + kept


def _hoisted_names(command: click.Command) -> list[str]:
    """The global option names `command` accepts after its name (those it has not itself)."""
    own = _option_names(command)
    return [n for n in _option_names(cli) if n not in own and n not in _NOT_HOISTED]


def _suggest_global_options(error: click.NoSuchOption) -> click.NoSuchOption:
    """A misspelt option after a command, with a "did you mean" among the global options it
    accepts there as well as its own (click suggests only the command's own)."""
    command = error.ctx.command if error.ctx else None
    if error.possibilities or command is None or command is cli:
        return error
    names = [*_option_names(command), *_hoisted_names(command)]
    return click.NoSuchOption(error.option_name, possibilities=names, ctx=error.ctx)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit 0 on success, 1 on failure, 2 on bad usage, 130 on Ctrl-C, 143 on
    SIGTERM, with one line per error.

    Bare `mirror` (or a bare command group) prints its help; global options may come before
    or after the command. SIGTERM ends a command as Ctrl-C does: its work is cancelled and
    cleaned up (an archive's staged files removed) before the process exits.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    with sigterm_ends_the_command():
        _main(args)


def _main(args: list[str]) -> None:
    """`main` within its SIGTERM handling."""
    try:
        cli.main(args=hoist_global_options(args), prog_name="mirror", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else cli.get_help(click.Context(cli)))
        sys.exit(0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        if isinstance(exc, click.NoSuchOption):
            exc = _suggest_global_options(exc)
        hint = (
            f" (see 'mirror {exc.ctx.command_path.partition(' ')[2]} --help')".replace("  ", " ")
            if exc.ctx
            else ""
        )
        _fail(f"{exc.format_message()}{hint}", EXIT_USAGE)
    except click.ClickException as exc:
        _fail(exc.format_message(), EXIT_FAILURE)
    except click.Abort:
        _fail("aborted", EXIT_INTERRUPTED)
    except MirrorError as exc:
        _fail(f"{exc}{_flag_hint(exc)}", EXIT_FAILURE)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}", EXIT_FAILURE)
    except (KeyboardInterrupt, _Interrupted):
        if sys.stderr.isatty():
            click.echo(err=True)  # the line after the terminal's ^C echo
        _fail("interrupted", EXIT_INTERRUPTED)
    except Terminated:
        _fail("terminated", EXIT_TERMINATED)


#: the flags that answer an error of the library, added to its message
_FLAG_HINTS: tuple[tuple[type[MirrorError], str], ...] = (
    (UntrustedCertificate, "use --ca-file, or --no-tls-verify to skip verification for it"),
)


def _flag_hint(error: MirrorError) -> str:
    """`; use --flag` for an error a flag answers, else nothing."""
    for kind, hint in _FLAG_HINTS:
        if isinstance(error, kind):
            return f"; {hint}"
    return ""


def _fail(message: str, code: int) -> None:
    line = printable(" ".join(message.split()))
    click.echo(f"mirror: error: {line}", err=True)
    sys.exit(code)
