"""HTTP to one registry: scheme, authentication, redirects, errors. Nothing here knows OCI."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import aiohttp
from yarl import URL

from mirror.auth.sources import SignInContext, sign_in
from mirror.auth.tokens import normalize_scopes
from mirror.errors import (
    MirrorError,
    NotFound,
    TransportError,
    Unauthorized,
    UntrustedCertificate,
)
from mirror.hosts import is_loopback
from mirror.limits import DEFAULT_LIMITS, Limits
from mirror.registry.errors import Missing, raise_for_status
from mirror.registry.ledger import BudgetLedger
from mirror.registry.options import RegistryOptions
from mirror.registry.pacing import Pacer
from mirror.registry.ratelimit import Budget, parse_budget
from mirror.retry import Attempt, Repeat, RetryPolicy
from mirror.support.httpbody import StallGuard, read_at_most

__all__ = ["RegistryTransport", "read_body", "repeated_whole"]

_log = logging.getLogger("mirror.registry")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5


class RegistryTransport:
    """Sends requests to one registry host and returns responses whose status was expected.

    - Authorization is sent only to the registry's own origin: a redirect to any other host
      (a storage back end) goes without it.
    - A 401 is answered once by learning the challenge and retrying with fresh credentials.
    - Non-expected statuses become typed errors; connection failures become TransportError.
    """

    def __init__(
        self,
        registry: str,
        api_host: str,
        session: aiohttp.ClientSession,
        options: RegistryOptions,
    ) -> None:
        self.registry = registry
        self.api_host = api_host
        self.session = session
        self.options = options
        self._base: URL | None = None
        self._base_lock = asyncio.Lock()
        self.retry = options.retry
        rate = options.host(registry).requests_per_second
        self.pacer = Pacer(rate) if rate else None
        self.auth = sign_in(
            registry,
            options.credential_sources(),
            SignInContext(
                session,
                options.ssl_for(registry),
                limits=options.limits,
                trusted_hosts=options.token_hosts,
            ),
        )
        #: tokens got in answer to a 401 and not yet accepted: a 401 for one is final
        self._renewed: set[str] = set()
        #: the request budget the registry last announced (rate-limit headers), if any
        self.budget: Budget | None = None
        reserve = options.host(registry).rate_limit_reserve
        #: with a reserve to keep, the budget spent here before each manifest GET goes
        self._ledger = BudgetLedger(registry, reserve) if reserve is not None else None
        #: the registry answered the referrers API with 404 or 405: it has none (spec 1.1)
        self.lacks_referrers_api = False

    async def base(self) -> URL:
        """The registry's base URL; loopback registries that do not speak TLS get HTTP."""
        async with self._base_lock:
            if self._base is None:
                self._base = await self._detect_base()
                self.auth.registry_secure = self._base.scheme == "https"
            return self._base

    async def _detect_base(self) -> URL:
        if self.options.uses_plain_http(self.registry):
            return URL(f"http://{self.api_host}")
        https = URL(f"https://{self.api_host}")
        if not is_loopback(self.api_host):
            return https
        try:
            async with self.session.get(
                https / "v2/", ssl=self.options.ssl_for(self.registry), allow_redirects=False
            ):
                return https
        except aiohttp.ClientConnectorCertificateError as exc:
            # it speaks TLS but its certificate is not trusted: never downgrade to HTTP
            raise _untrusted(self.registry, exc) from None
        except (aiohttp.ClientSSLError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            return URL(f"http://{self.api_host}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"cannot reach registry {self.registry}: {exc}") from None

    def _refused(self, what: str, method: str, url: URL, scopes: tuple[str, ...]) -> Unauthorized:
        asked = " ".join(sorted(normalize_scopes(scopes))) or "no scope"
        return Unauthorized(
            f"{what}: {self.registry} refused the credentials (401) for {asked}",
            status=401,
            method=method,
            url=str(url.with_query(None)),
        )

    async def request(
        self,
        method: str,
        target: str | URL,
        *,
        scopes: Iterable[str],
        what: str,
        missing: Missing = Missing.ANYTHING,
        ok: Iterable[int] = (200,),
        headers: dict[str, str] | None = None,
        data: Any = None,
        replayable: bool = True,
        attempt: Attempt | None = None,
    ) -> aiohttp.ClientResponse:
        """Send a request and return the open response (the caller releases it).

        `target` is a path under the base URL (or an absolute URL, e.g. an upload Location).
        `replayable` is False for streamed bodies, which cannot be sent twice. `attempt`, the
        try of a state-changing operation, is marked `answer_lost` when the request went out
        and no answer came back (a cut or stall after connecting, a 5xx).
        """
        send = functools.partial(
            self._exchange,
            method,
            target,
            scope_tuple=tuple(scopes),
            what=what,
            missing=missing,
            expected=frozenset(ok),
            headers=headers,
            data=data,
            replayable=replayable,
            attempt=attempt,
        )
        if self._ledger is None or method != "GET" or missing is not Missing.MANIFEST:
            return await send()
        probe = await self._ledger.spend(what)  # a manifest GET spends the rationed budget
        answered = False
        try:
            resp = await send()
            answered = True  # a reply that says no budget: this registry rations nothing
            return resp
        finally:
            # an error reply (a 404, a 503) tells nothing of the budget unless it said one
            # (`note` took it): the next request waiting asks alone in its turn
            if probe:
                self._ledger.probed(answered)

    async def _exchange(
        self,
        method: str,
        target: str | URL,
        *,
        scope_tuple: tuple[str, ...],
        what: str,
        missing: Missing,
        expected: frozenset[int],
        headers: dict[str, str] | None,
        data: Any,
        replayable: bool,
        attempt: Attempt | None,
    ) -> aiohttp.ClientResponse:
        """`request` itself: send, answer a 401 once, follow redirects, map errors."""
        base = await self.base()
        url = target if isinstance(target, URL) else _join(base, target)
        authorization = await self.auth.header(scope_tuple)
        retried = False
        hops = 0
        while True:
            sent = dict(headers or {})
            sent.setdefault("User-Agent", self.options.user_agent)
            same_origin = _origin(url) == _origin(base)
            if authorization and same_origin:
                sent["Authorization"] = authorization
            if self.pacer is not None:
                await self.pacer.wait()
            # sending the body, then the reply's headers, must keep moving (slowloris)
            guard = StallGuard(what, self.options.limits)
            body = guard.counted(data) if isinstance(data, AsyncIterable) else data
            try:
                resp = await guard.send(
                    self.session.request(
                        method,
                        url,
                        headers=sent,
                        data=body,
                        allow_redirects=False,
                        ssl=self.options.ssl_for(self.registry if same_origin else url.host or ""),
                    )
                )
            except aiohttp.ClientConnectorCertificateError as exc:
                raise _untrusted(url.host or self.registry, exc) from None
            except aiohttp.ClientConnectorError as exc:  # never connected: nothing went out
                raise _cannot_connect(what, url, same_origin, exc) from None
            except (aiohttp.ClientError, TimeoutError, TransportError) as exc:
                ours = _raised_by_body(exc)
                if ours is not None:  # the body we sent failed (bad content): not the network
                    raise ours from None
                if attempt is not None:
                    attempt.answer_lost = True
                raise TransportError(f"{what}: connection to {url.host} failed: {exc}") from None
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("%s %s -> %d", method, url.with_query(None), resp.status)
            if self.options.on_response is not None:
                self.options.on_response(self.registry, method, resp.status)
            if same_origin and (budget := parse_budget(resp.headers)) is not None:
                self._note_budget(budget)
            if resp.status == 401 and same_origin:
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.release()
                refused = self._refused(what, method, url, scope_tuple)
                if retried or (authorization is not None and authorization in self._renewed):
                    raise refused  # a fresh token was refused too: a second 401 in a row
                fresh = await self.auth.unauthorized(challenge, scope_tuple) if challenge else None
                if fresh is None:
                    raise refused
                self._renewed.add(fresh)
                if not replayable:
                    # a streamed body cannot be sent again here: the transfer's own loop
                    # resumes it (asks where an upload stands, re-opens its source)
                    raise _Renewed(
                        f"{what}: the token expired during the transfer; renewed it",
                        status=401,
                        method=method,
                        url=str(url.with_query(None)),
                        retryable=True,
                    )
                authorization, retried = fresh, True
                continue
            self._renewed.discard(authorization or "")
            if resp.status in _REDIRECTS and resp.status not in expected:
                location = resp.headers.get("Location")
                resp.release()
                hops += 1
                if not location or hops > _MAX_REDIRECTS:
                    raise TransportError(f"{what}: too many or empty redirects")
                url = url.join(URL(location, encoded=True))
                if resp.status == 303:
                    method, data = "GET", None
                continue
            if resp.status not in expected:
                if attempt is not None and resp.status >= 500:
                    attempt.answer_lost = True  # a front end may have passed it on
                try:
                    await raise_for_status(resp, what, missing, self.options.limits)
                finally:
                    resp.release()
            return resp

    async def delete(
        self,
        target: str,
        *,
        scopes: Iterable[str],
        what: str,
        missing: Missing = Missing.ANYTHING,
        ok: Iterable[int] = (200, 202, 204),
        headers: dict[str, str] | None = None,
    ) -> None:
        """DELETE `target`, a `Repeat.CHECKED` operation: a 404 to a try after one whose
        answer was lost (a cut, a 5xx) means that try deleted it, and it is done; a 404 to
        the first try is the NotFound of `missing`."""
        scope_tuple, expected = tuple(scopes), tuple(ok)

        async def delete(attempt: Attempt) -> None:
            try:
                resp = await self.request(
                    "DELETE",
                    target,
                    scopes=scope_tuple,
                    what=what,
                    missing=missing,
                    ok=expected,
                    headers=headers,
                    attempt=attempt,
                )
            except NotFound:
                if not attempt.after_lost_answer:
                    raise
                _log.info("%s: gone after a lost answer to its DELETE: deleted", what)
                return
            resp.release()

        await self.retry.run(delete, Repeat.CHECKED)

    def _note_budget(self, budget: Budget) -> None:
        """Keep the budget the registry announced (said at -v when first seen)."""
        if self.budget is None:
            _log.info(
                "%s announces a rate limit: %d requests left%s",
                self.registry,
                budget.remaining,
                f" of {budget.limit}" if budget.limit is not None else "",
            )
        self.budget = budget
        if self._ledger is not None:
            self._ledger.note(budget)


class _Renewed(Unauthorized):
    """A 401 answered by renewing the token, on a request that cannot be sent again as is
    (raised retryable: the transfer's own loop sends it again with the fresh token)."""


P = ParamSpec("P")
T = TypeVar("T")


def repeated_whole(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """Declare a method of an object with a `transport` a `Repeat.WHOLE` operation (a read,
    or a write that is the same done twice), run by the transport's `RetryPolicy.run`."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: P.args, **kwargs: P.kwargs) -> T:
        policy: RetryPolicy = self.transport.retry
        return await policy.run(lambda _: method(self, *args, **kwargs), Repeat.WHOLE)

    return cast(Callable[Concatenate[Any, P], Coroutine[Any, Any, T]], wrapper)


async def read_body(
    resp: aiohttp.ClientResponse, limit: int, what: str, limits: Limits = DEFAULT_LIMITS
) -> bytes:
    """Read at most `limit` bytes of a response body; a cut or stalled connection is a
    TransportError."""
    try:
        return await read_at_most(resp, limit, limits, what)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise TransportError(f"{what}: reading the reply failed: {exc}") from None


def _raised_by_body(exc: BaseException) -> MirrorError | None:
    """The error of ours (a request body's DigestMismatch, say) that aiohttp wrapped as a
    failure to send, if any."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, MirrorError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


#: lookup failures another try may get past (the others say the name does not exist)
_TEMPORARY_LOOKUP = frozenset({socket.EAI_AGAIN})


def _cannot_connect(
    what: str, url: URL, registry: bool, exc: aiohttp.ClientConnectorError
) -> TransportError:
    """A connection never made, in mirror's words, naming the host: a name that does not
    resolve and a refusal by this machine are final (another try would fail the same way);
    a refusal elsewhere (a registry restarting) and other failures are retried."""
    host = url.host or ""
    where = f"{'registry' if registry else 'host'} {_host_port(url)}"
    cause = exc.os_error
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        temporary = isinstance(cause, socket.gaierror) and cause.errno in _TEMPORARY_LOOKUP
        reason = (cause.strerror or str(cause)).lower() if cause else "lookup failed"
        return TransportError(f"{what}: cannot resolve {where}: {reason}", retryable=temporary)
    if isinstance(cause, ConnectionRefusedError):
        return TransportError(
            f"{what}: cannot connect to {where}: connection refused",
            retryable=not is_loopback(host),
        )
    reason = cause.strerror if cause is not None and cause.strerror else str(cause or exc)
    return TransportError(f"{what}: cannot connect to {where}: {reason.lower()}")


def _host_port(url: URL) -> str:
    """`host:port` as the user names a registry (the port left out when it is the scheme's)."""
    host = f"[{url.host}]" if url.host and ":" in url.host else (url.host or "")
    return host if url.port is None or url.is_default_port() else f"{host}:{url.port}"


def _untrusted(host: str, exc: aiohttp.ClientConnectorCertificateError) -> UntrustedCertificate:
    return UntrustedCertificate(
        f"TLS certificate of {host} is not trusted ({exc.certificate_error})"
    )


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, (url.host or "").lower(), url.port)


def _join(base: URL, target: str) -> URL:
    if "://" in target:
        return URL(target, encoded=True)
    return URL(str(base).rstrip("/") + "/" + target.lstrip("/"), encoded=True)
