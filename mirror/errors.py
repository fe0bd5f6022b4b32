"""Every exception mirror raises, in one tree.

::

    MirrorError
    ├─ InvalidReference (also ValueError)       a reference string that cannot be parsed
    ├─ InvalidDigest (also ValueError)          a digest that is not <alg>:<lower-case hex>
    ├─ NotFound (also LookupError)              raised alike by every endpoint
    │   ├─ ManifestNotFound
    │   ├─ BlobNotFound
    │   └─ RepositoryNotFound
    ├─ RegistryError (.status .method .url .codes .retryable)
    │   ├─ Unauthorized
    │   ├─ Forbidden
    │   ├─ RateLimited (.retry_after)
    │   └─ ServerError
    ├─ BudgetReserved                           a registry's budget is down to the reserve
    ├─ TransportError                           connection reset, timeout (retryable, unless
    │                                           said: a name unknown, a refusal on loopback)
    │   └─ UntrustedCertificate                 a TLS certificate no trusted CA signed
    ├─ ContentError (also ValueError)           bytes that are not what they claim
    │   ├─ DigestMismatch
    │   ├─ SizeMismatch
    │   └─ ManifestInvalid
    ├─ LayoutError                              an OCI image layout that is unusable
    ├─ StorageError                             a local file not read or written (disk full)
    ├─ UnsupportedOperation                     the registry has no API for it (e.g. properties)
    ├─ Refused                                  an image the signature policy does not admit
    └─ UnsupportedMediaType

Every message is one line that names what was wrong; the CLI prints it as is.
Whether an error is worth retrying is read from ``retryable`` and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BlobNotFound",
    "BudgetReserved",
    "ContentError",
    "DigestMismatch",
    "Forbidden",
    "InvalidDigest",
    "InvalidReference",
    "LayoutError",
    "ManifestInvalid",
    "ManifestNotFound",
    "MirrorError",
    "NotFound",
    "RateLimited",
    "Refused",
    "RegistryError",
    "RepositoryNotFound",
    "ServerError",
    "SizeMismatch",
    "StorageError",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
    "UnsupportedOperation",
    "UntrustedCertificate",
]


class MirrorError(Exception):
    """Base of every error mirror raises on purpose."""

    retryable: bool = False


class InvalidReference(MirrorError, ValueError):
    """A reference (`docker://…`, `oci:…`, `oci-archive:…`) that cannot be parsed."""


class InvalidDigest(MirrorError, ValueError):
    """A digest string with an unknown algorithm or a malformed encoded part."""


class NotFound(MirrorError, LookupError):
    """The named content does not exist at the endpoint."""


class ManifestNotFound(NotFound):
    """No manifest under that tag, name or digest."""


class BlobNotFound(NotFound):
    """No blob with that digest."""


class RepositoryNotFound(NotFound):
    """A repository the registry does not know (a listing of its tags answered 404)."""


class RegistryError(MirrorError):
    """A registry answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
        codes: Sequence[str] = (),
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.url = url
        self.codes = tuple(codes)
        self.retryable = retryable


class Unauthorized(RegistryError):
    """401: credentials missing or rejected."""


class Forbidden(RegistryError):
    """403: authenticated but not allowed."""


class BudgetReserved(MirrorError):
    """A registry's announced request budget is down to the reserve the user keeps: no more
    manifests are asked of it this run (the work is deferred, not failed)."""


class RateLimited(RegistryError):
    """429 (or 503 with Retry-After): slow down."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
        codes: Sequence[str] = (),
    ) -> None:
        super().__init__(message, status=status, method=method, url=url, codes=codes)
        self.retry_after = retry_after
        self.retryable = True


class ServerError(RegistryError):
    """5xx from the registry."""


class TransportError(MirrorError):
    """The connection failed: reset, refused, timed out. Worth a retry, unless the one who
    raises it says another try would fail the same way (`retryable=False`: a name that does
    not resolve, a refusal by this machine)."""

    retryable = True

    def __init__(self, message: str = "", *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class UntrustedCertificate(TransportError):
    """A registry's TLS certificate that no trusted CA signed (never retried)."""

    retryable = False


class ContentError(MirrorError, ValueError):
    """Bytes that do not match what their descriptor promised."""


class DigestMismatch(ContentError):
    """The content hashes to another digest than the expected one."""


class SizeMismatch(ContentError):
    """The content is longer or shorter than the expected size."""


class ManifestInvalid(ContentError):
    """A manifest or index that is not valid JSON of the expected shape, or too large."""


class LayoutError(MirrorError):
    """An OCI image layout that is missing, malformed or cannot be written."""


class StorageError(MirrorError):
    """A local file could not be read or written (a full disk, an I/O error, a permission):
    the OS error, named by the layout or archive it happened in."""


class UnsupportedOperation(MirrorError):
    """The registry cannot do this: no metadata API, no tag-only delete, and so on."""


class Refused(MirrorError):
    """An image the signature policy does not admit (no signature, an untrusted key, a
    payload naming another digest or identity, an invalid certificate or Rekor entry); the
    message names the image and the reason. Nothing of the image was written."""


class UnsupportedMediaType(MirrorError):
    """A media type mirror does not handle (for example Docker schema 1)."""
