"""The sync configuration (TOML), validated strictly: an unknown key, a bad regex, a bad semver
range or a missing credentials variable is one error naming the key, before anything runs.

    [defaults]                     # all optional
    concurrency = 16
    platforms = ["linux/amd64"]
    retries = 5
    referrers = false              # also signatures, SBOMs, attestations (to any depth)
    digest_tags = true             # with referrers: cosign's sha256-<hex>.sig/.att/.sbom tags
    keep_going = true
    blob_cache = true              # remember where blobs are, to mount them next run too
    keep_untagged = 0              # layouts: images that lost their last name kept, per repo
    verify_destination_every = "24h"  # compare every destination tag by a HEAD at least this
                                   # often ("0": every run); between, a registry repository
                                   # whose tag listing is the one the last run recorded is
                                   # trusted (docs/sync.md)
    policy = "policy.json"         # admit only images this containers-policy.json accepts

    [registries."registry.example.com"]
    username_env = "REG_USER"      # credentials from environment variables
    password_env = "REG_PASS"
    plain_http = false
    tls_verify = true
    ca_file = "/etc/ssl/private-ca.pem"
    requests_per_second = 20
    rate_limit_reserve = 10        # stop asking for manifests with 10 requests of budget left

    [[jobs]]
    name = "team"                  # optional, for reports
    source = "registry.example.com/team/app"      # one repository, or:
    # sources = ["host/a", "host/b"]              # several, or:
    # registry = "host"  include = ["team/*"]  exclude = ["team/tmp-*"]   # a whole registry
    # source = "oci:/backup"                      # a layout
    destination = "mirror.internal:5000/upstream" # a registry prefix, or "oci:/backup"
    delete = false                 # mirror deletions of tags that left the source
    keep_untagged = 0              # over the default, for this job's layout destination
    policy = "team-policy.json"    # over the default, for this job (paths: from this file's folder)
    [jobs.tags]
    include = ["^v\\d+"]           # regular expressions (any must match)
    exclude = ["-rc"]
    semver = ">=1.2.0 <2.0.0"      # comparators, all must hold ("," or space separated)
    newest = 3                     # the newest N after the other filters
    newest_by = "semver"           # or "created" (image config time)
    digests = ["sha256:…"]         # pins: also copy these manifests by digest

Over 400 lines on purpose: the whole schema is checked here, key by key, each error naming
its key; the file is the one place a reader looks for what a configuration may say.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import regex
import semver

from mirror.auth.credentials import Credentials
from mirror.errors import InvalidDigest, MirrorError
from mirror.oci.digest import Digest
from mirror.oci.platform import Platform
from mirror.oci.reference import endpoint_hint
from mirror.registry.options import HostSettings
from mirror.support.timestamps import parse_duration

if TYPE_CHECKING:
    from mirror.trust.policy import Policy

__all__ = ["ConfigError", "Job", "SyncConfig", "TagFilter", "load_config"]


class ConfigError(MirrorError):
    """A sync configuration that cannot be used; the message names the key."""


_log = logging.getLogger("mirror.sync")
#: the time one tag filter may take on one tag (tags are the registry's, patterns the user's)
MATCH_SECONDS = 0.1
_COMPARATOR = re.compile(r"^(>=|<=|>|<|==|!=)?\s*v?(\d+(?:\.\d+){0,2}(?:[-+][0-9A-Za-z.+-]*)?)$")


def _semver_of(tag: str) -> semver.Version | None:
    """The semantic version a tag spells (`v1.2`, `1.2.3-rc.1`), or None."""
    text = tag[1:] if tag[:1] in ("v", "V") else tag
    try:
        return semver.Version.parse(text, optional_minor_and_patch=True)
    except ValueError:
        return None


def _search(pattern: regex.Pattern[str], tag: str, *, undecided: bool = False) -> bool:
    """Whether `pattern` finds a match in `tag` within MATCH_SECONDS; `undecided` if not."""
    try:
        return pattern.search(tag, timeout=MATCH_SECONDS) is not None
    except TimeoutError:
        _log.warning(
            "tag filter %r took over %g s on tag %r: tag not taken",
            pattern.pattern,
            MATCH_SECONDS,
            tag,
        )
        return undecided


@dataclass(frozen=True)
class TagFilter:
    """Which tags of a repository a job takes."""

    include: tuple[regex.Pattern[str], ...] = ()
    exclude: tuple[regex.Pattern[str], ...] = ()
    semver_range: tuple[tuple[str, semver.Version], ...] = ()
    newest: int | None = None
    newest_by: str = "semver"
    digests: tuple[Digest, ...] = ()

    def wants(self, tag: str) -> bool:
        """Regex and semver filters (the newest-N cut happens later, over all that pass).

        Tags come from registries, so each match has a time budget (MATCH_SECONDS): a tag
        that a pattern cannot decide in time is not taken, with a warning.
        """
        if self.include and not any(_search(p, tag) for p in self.include):
            return False
        if any(_search(p, tag, undecided=True) for p in self.exclude):
            return False
        if self.semver_range:
            version = _semver_of(tag)
            if version is None:
                return False
            return all(version.match(f"{op}{bound}") for op, bound in self.semver_range)
        return True

    @staticmethod
    def semver_key(tag: str) -> semver.Version | None:
        """The sort key for newest-by-semver (None: not a version)."""
        return _semver_of(tag)


@dataclass(frozen=True)
class Job:
    """One job: where from, where to, which tags."""

    name: str
    sources: tuple[str, ...] = ()
    registry: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    destination: str = ""
    delete: bool = False
    tags: TagFilter = field(default_factory=TagFilter)
    #: a layout destination keeps this many images that lost their last name, per repository
    keep_untagged: int = 0
    #: the signature policy of this job's images (None: the default's)
    policy: Policy | None = field(default=None, compare=False, repr=False)

    def describe_source(self) -> str:
        """The job's source as its configuration names it."""
        return self.registry or ", ".join(self.sources)

    def wants_repository(self, name: str) -> bool:
        """Catalog globs of a whole-registry job."""
        if self.include and not any(fnmatch.fnmatchcase(name, g) for g in self.include):
            return False
        return not any(fnmatch.fnmatchcase(name, g) for g in self.exclude)


@dataclass(frozen=True)
class SyncConfig:
    """The whole configuration."""

    jobs: tuple[Job, ...]
    registries: dict[str, HostSettings] = field(default_factory=dict)
    concurrency: int = 16
    platforms: tuple[Platform, ...] = ()
    retries: int = 5
    referrers: bool = False
    #: with referrers: also cosign-style digest tags (`sha256-<hex>.sig`, `.att`, `.sbom`)
    digest_tags: bool = True
    keep_going: bool = True
    #: remember across runs where blobs are, to mount them instead of uploading them again
    blob_cache: bool = True
    #: seconds between full comparisons of a registry destination's tags (0: every run)
    verify_destination_every: float = 86_400.0
    #: the signature policy of every job that names none (None: no policy)
    policy: Policy | None = field(default=None, compare=False, repr=False)

    def policy_of(self, job: str) -> Policy | None:
        """The signature policy that admits the images of the job named `job`."""
        found = next((j.policy for j in self.jobs if j.name == job), None)
        return found or self.policy

    def carries_attached(self, job: str) -> bool:
        """Whether the job's images take what is attached to them along (referrers and
        digest tags): asked for, or a signature policy (the signatures travel)."""
        return self.referrers or self.policy_of(job) is not None

    def hosts(self) -> frozenset[str]:
        """Every registry the configuration names: job sources and destinations, and the
        `[registries]` table (layouts excepted)."""
        named = set(self.registries)
        for job in self.jobs:
            if job.registry:
                named.add(job.registry)
            for text in (*job.sources, job.destination):
                if text and not text.startswith("oci:"):
                    named.add(text.removeprefix("docker://").split("/", 1)[0])
        return frozenset(named)


def _check_keys(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})"
            )


def _typed(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    if value is not None and (
        not isinstance(value, kind) or (isinstance(value, bool) and kind is int)
    ):
        raise ConfigError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}")
    return value


def _strings(obj: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key}: expected a list of strings")
    return tuple(value)


def _regexes(obj: dict[str, Any], key: str, where: str) -> tuple[regex.Pattern[str], ...]:
    out = []
    for pattern in _strings(obj, key, where):
        try:
            out.append(regex.compile(pattern))
        except regex.error as exc:
            raise ConfigError(f"{where}.{key}: bad regular expression {pattern!r}: {exc}") from None
    return tuple(out)


def _semver_range(text: str, where: str) -> tuple[tuple[str, semver.Version], ...]:
    parts = [p for p in re.split(r"[,\s]+(?=[<>=!v\d])", text.strip()) if p.strip()]
    out = []
    for part in parts:
        match = _COMPARATOR.match(part.strip())
        version = _semver_of(match.group(2)) if match else None
        if match is None or version is None:
            raise ConfigError(f"{where}.semver: bad semver range {text!r} (at {part!r})")
        out.append((match.group(1) or "==", version))
    if not out:
        raise ConfigError(f"{where}.semver: empty semver range")
    return tuple(out)


def _tag_filter(obj: Any, where: str) -> TagFilter:
    if obj is None:
        return TagFilter()
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a table")
    _check_keys(obj, {"include", "exclude", "semver", "newest", "newest_by", "digests"}, where)
    semver_text = _typed(obj, "semver", str, where)
    newest = _typed(obj, "newest", int, where)
    if newest is not None and newest < 1:
        raise ConfigError(f"{where}.newest: must be at least 1")
    newest_by = _typed(obj, "newest_by", str, where) or "semver"
    if newest_by not in ("semver", "created"):
        raise ConfigError(f"{where}.newest_by: must be 'semver' or 'created'")
    digests = []
    for text in _strings(obj, "digests", where):
        try:
            digests.append(Digest(text))
        except InvalidDigest as exc:
            raise ConfigError(f"{where}.digests: {exc}") from None
    return TagFilter(
        include=_regexes(obj, "include", where),
        exclude=_regexes(obj, "exclude", where),
        semver_range=_semver_range(semver_text, where) if semver_text else (),
        newest=newest,
        newest_by=newest_by,
        digests=tuple(digests),
    )


def _registry(host: str, obj: Any, env: dict[str, str]) -> HostSettings:
    where = f"registries.{host!r}"
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a table")
    _check_keys(
        obj,
        {
            "username_env",
            "password_env",
            "plain_http",
            "tls_verify",
            "ca_file",
            "requests_per_second",
            "rate_limit_reserve",
        },
        where,
    )
    credentials = None
    user_env, pass_env = (
        _typed(obj, "username_env", str, where),
        _typed(obj, "password_env", str, where),
    )
    if bool(user_env) != bool(pass_env):
        raise ConfigError(f"{where}: username_env and password_env go together")
    if user_env and pass_env:
        for key, name in (("username_env", user_env), ("password_env", pass_env)):
            if name not in env:
                raise ConfigError(f"{where}.{key}: environment variable {name} is not set")
        credentials = Credentials(env[user_env], env[pass_env])
    rps = _typed(obj, "requests_per_second", (int, float), where)
    if rps is not None and rps <= 0:
        raise ConfigError(f"{where}.requests_per_second: must be positive")
    return HostSettings(
        credentials=credentials,
        plain_http=_typed(obj, "plain_http", bool, where),
        tls_verify=_typed(obj, "tls_verify", bool, where),
        ca_file=_existing_file(_typed(obj, "ca_file", str, where), f"{where}.ca_file"),
        requests_per_second=float(rps) if rps is not None else None,
        rate_limit_reserve=_reserve(obj, where),
    )


def _reserve(obj: dict[str, Any], where: str) -> int | None:
    reserve = _typed(obj, "rate_limit_reserve", int, where)
    if reserve is None:
        return None
    if reserve < 0:
        raise ConfigError(f"{where}.rate_limit_reserve: must be 0 or more")
    return int(reserve)


def _existing_file(path: str | None, where: str) -> str | None:
    """`path` when it names a readable file (or None); ConfigError naming `where` if not."""
    if path is not None and not os.access(path, os.R_OK):
        raise ConfigError(f"{where}: cannot read {path}")
    return path


def _keep_untagged(obj: dict[str, Any], where: str) -> int | None:
    keep = _typed(obj, "keep_untagged", int, where)
    if keep is not None and keep < 0:
        raise ConfigError(f"{where}.keep_untagged: must be 0 or more")
    return None if keep is None else int(keep)


def _policy(obj: dict[str, Any], where: str, base: Path | None) -> Policy | None:
    """The policy file a `policy` key names (relative to `base`), read; ConfigError if not."""
    text = _typed(obj, "policy", str, where)
    if text is None:
        return None
    from mirror.trust.policy import PolicyError, load_policy  # cryptography only when named

    path = Path(text) if base is None else base / text
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise ConfigError(f"{where}.policy: {exc}") from None


def _job(
    index: int,
    obj: Any,
    *,
    need_destination: bool = True,
    keep_untagged: int = 0,
    base: Path | None = None,
) -> Job:
    where = f"jobs[{index}]"
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a table")
    _check_keys(
        obj,
        {
            "name",
            "source",
            "sources",
            "registry",
            "include",
            "exclude",
            "destination",
            "delete",
            "tags",
            "keep_untagged",
            "policy",
        },
        where,
    )
    source = _typed(obj, "source", str, where)
    sources = _strings(obj, "sources", where)
    registry = _typed(obj, "registry", str, where)
    given = sum(bool(x) for x in (source, sources, registry))
    if given != 1:
        raise ConfigError(f"{where}: give exactly one of source, sources, registry")
    destination = _typed(obj, "destination", str, where) or ""
    if need_destination and not destination:
        raise ConfigError(f"{where}.destination: missing")
    if (obj.get("include") or obj.get("exclude")) and not registry:
        raise ConfigError(f'{where}.include: repository globs go with registry = "host"')
    source_key = "sources" if sources else "source"
    for key, text in [
        ("destination", destination),
        *((source_key, s) for s in sources or [source]),
    ]:
        if text and text.startswith(("oci-archive:", "docker-archive:")):
            raise ConfigError(
                f"{where}.{key}: {text.partition(':')[0]} files are for copy and bundle; "
                'a sync takes registries and layouts ("oci:DIR")'
            )
        hint = endpoint_hint(text) if text else None
        if hint is not None:  # a registry prefix cannot start so: a layout was meant
            raise ConfigError(f"{where}.{key}: {hint}")
    keep = _keep_untagged(obj, where)
    if keep is not None and destination and not destination.startswith("oci:"):
        raise ConfigError(
            f"{where}.keep_untagged: for layout destinations (oci:DIR); a registry keeps "
            "untagged manifests until its own garbage collection"
        )
    return Job(
        name=_typed(obj, "name", str, where) or f"job{index}",
        sources=(source,) if source else sources,
        registry=registry,
        include=_strings(obj, "include", where),
        exclude=_strings(obj, "exclude", where),
        destination=destination,
        delete=bool(_typed(obj, "delete", bool, where)),
        tags=_tag_filter(obj.get("tags"), f"{where}.tags"),
        keep_untagged=keep_untagged if keep is None else keep,
        policy=_policy(obj, where, base),
    )


def _one_policy_per_name(jobs: tuple[Job, ...]) -> None:
    """Images are admitted by their job's name: two jobs of one name must not differ in
    their signature policy (ConfigError naming the second)."""
    seen: dict[str, str | None] = {}
    for index, job in enumerate(jobs):
        path = job.policy.path if job.policy is not None else None
        if seen.setdefault(job.name, path) != path:
            raise ConfigError(
                f"jobs[{index}].name: another job is named {job.name!r} with another policy; "
                "give each its own name"
            )


def parse_config(
    data: dict[str, Any],
    env: dict[str, str] | None = None,
    *,
    need_destination: bool = True,
    base: Path | None = None,
) -> SyncConfig:
    """Validate a parsed TOML document into a SyncConfig (ConfigError naming the key).

    Bundles use the same jobs to choose images and need no destination. Relative policy
    paths are from `base` (the configuration file's folder), else the working directory.
    """
    env = dict(os.environ) if env is None else env
    _check_keys(data, {"defaults", "registries", "jobs"}, "config")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError("defaults: expected a table")
    _check_keys(
        defaults,
        {
            "concurrency",
            "platforms",
            "retries",
            "referrers",
            "digest_tags",
            "keep_going",
            "blob_cache",
            "keep_untagged",
            "verify_destination_every",
            "policy",
        },
        "defaults",
    )
    platforms = []
    for text in _strings(defaults, "platforms", "defaults"):
        try:
            platforms.append(Platform.parse(text))
        except ValueError as exc:
            raise ConfigError(f"defaults.platforms: {exc}") from None
    registries = data.get("registries", {})
    if not isinstance(registries, dict):
        raise ConfigError("registries: expected a table of hosts")
    jobs = data.get("jobs", [])
    if not isinstance(jobs, list) or not jobs:
        raise ConfigError("jobs: at least one [[jobs]] table is needed")
    concurrency = _typed(defaults, "concurrency", int, "defaults") or 16
    retries = _typed(defaults, "retries", int, "defaults")
    keep_going = _typed(defaults, "keep_going", bool, "defaults")
    keep_untagged = _keep_untagged(defaults, "defaults") or 0
    parsed = tuple(
        _job(i, j, need_destination=need_destination, keep_untagged=keep_untagged, base=base)
        for i, j in enumerate(jobs)
    )
    _one_policy_per_name(parsed)
    return SyncConfig(
        jobs=parsed,
        registries={host: _registry(host, obj, env) for host, obj in registries.items()},
        concurrency=max(1, concurrency),
        platforms=tuple(platforms),
        retries=5 if retries is None else retries,
        referrers=bool(_typed(defaults, "referrers", bool, "defaults")),
        digest_tags=_typed(defaults, "digest_tags", bool, "defaults") is not False,
        keep_going=keep_going is not False,
        blob_cache=_typed(defaults, "blob_cache", bool, "defaults") is not False,
        verify_destination_every=_verify_every(defaults),
        policy=_policy(defaults, "defaults", base),
    )


def _verify_every(defaults: dict[str, Any]) -> float:
    text = _typed(defaults, "verify_destination_every", str, "defaults")
    if text is None:
        return 86_400.0
    seconds = parse_duration(text)
    if seconds is None:
        raise ConfigError(
            f"defaults.verify_destination_every: {text!r} is not a duration like 30m, 24h or 7d"
        )
    return seconds


def load_config(
    path: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    *,
    need_destination: bool = True,
) -> SyncConfig:
    """Read and validate a TOML sync configuration file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, env, need_destination=need_destination, base=path.parent)
