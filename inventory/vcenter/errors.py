"""The exceptions of inventory.vcenter: every failure talking to vCenter is a VCenterError, whose
str() is one line for an administrator."""

from __future__ import annotations

SESSION_ENDED = "the vCenter session ended (vCenter restarted or the session expired)"
CREDENTIALS_REJECTED = "vCenter rejected the user name or password"


class VCenterError(Exception):
    """Any failure talking to vCenter; str() is one line for an administrator (never a password).

    retryable says whether trying again later may help (the subclasses that are not retryable need a
    person: a wrong password retried automatically would lock the account).
    """

    retryable = False


class Unreachable(VCenterError):
    """Nothing answers at host:port (refused, timed out, name not resolved), the connection dropped,
    or the session ended (vCenter restarted): reconnect later."""

    retryable = True


class BadCredentials(VCenterError):
    """vCenter refused the user name or password. Never retry automatically (account lockout)."""


class NotAVCenter(VCenterError):
    """Something answers, but it is not a vCenter Server (a web server, a standalone ESXi host, or
    plain HTTP where HTTPS was expected)."""


class ThumbprintMismatch(VCenterError):
    """The server's certificate is not the pinned one: it was replaced, or another server answers."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected  # "AA:BB:..."
        self.actual = actual


class CertificateNotTrusted(VCenterError):
    """The certificate does not verify against the system's CAs for this host name. .thumbprint is its
    SHA-256 ("AA:BB:..."), to show to an administrator who may check and pin it."""

    def __init__(self, message: str, *, thumbprint: str, reason: str) -> None:
        super().__init__(message)
        self.thumbprint = thumbprint
        self.reason = reason  # OpenSSL's words, such as "self-signed certificate"


class NotFound(VCenterError):
    """The VM, snapshot or datastore file does not exist (any more)."""


class QuiesceFailed(VCenterError):
    """A quiesced snapshot failed because the guest could not quiesce (VMware Tools not running, a VSS
    writer or freeze script failing, the freeze taking too long): a crash-consistent snapshot
    (quiesce=False) may still be taken, if the policy allows it."""


class ChangeTrackingUnavailable(VCenterError):
    """Changed Block Tracking cannot say what changed since this change id: tracking is off, was reset
    since (switched off and on, the VM restored or moved), or the id is not one of this disk's. Read
    the whole disk instead."""


class AlreadyExists(VCenterError):
    """Something of that name exists already where it was to be created (a VM of that name in the
    folder): nothing was created."""


class InvalidName(VCenterError):
    """A name vCenter would not store as given: empty, too long, with control characters, or one that
    would not read back the same (see names.check_vm_name)."""


class ConfigNotRestorable(VCenterError):
    """A captured VM configuration (vm_config) that cannot be recreated: a newer schema, a device type
    or placement this program cannot create. Nothing was created."""


class Cancelled(Exception):
    """should_cancel() returned True during a long operation (DatastoreFile.write); what was written so
    far stays. Not a VCenterError: a cancelled job is not a failed one."""


def http_failure(where: str, status: int, request: str) -> VCenterError:
    """The exception for an HTTP error status vCenter answered to one of this package's raw requests
    (the /folder datastore API, the bulk SOAP reads); request completes the sentence ("reading
    [ds1] web-01/web-01-flat.vmdk", "from /sdk").

    401 means the session's cookie is no longer valid: the session ended, as SOAP's NotAuthenticated
    says (Unreachable: reconnecting logs in again; the password was not sent, so it is not
    BadCredentials). 502-504 come from a proxy in front of vCenter that had no answer (Unreachable).
    Callers name what 403 and 404 mean for their request before falling back on this.
    """
    if status == 401:
        return Unreachable(f"{where}: {SESSION_ENDED} (HTTP 401 {request})")
    if status in (502, 503, 504):
        return Unreachable(f"{where}: HTTP {status} {request}")
    return VCenterError(f"{where}: HTTP {status} {request}")


class DatastoreUnreachable(VCenterError):
    """The host could not mount an NFS export as a datastore: the NFS server does not answer from that
    host, refuses the mount, or does not export that path. Nothing was mounted."""


class InUse(VCenterError):
    """vCenter refused because the object is still in use (a datastore on which a registered VM has
    files): stop or move that VM first."""
