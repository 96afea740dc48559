"""Exceptions raised by the agentbox SDK.

Every exception derives from :class:`SandboxError`. Errors that come from the
daemon carry its JSON-RPC error ``code``, its plain-English ``daemon_message``
and its optional ``data``; errors detected by the SDK itself have ``code``
``None`` (except :class:`InvalidArgument`, which uses -32602 either way).

A run that times out or is killed is *not* an exception: it is a normal
:class:`agentbox.Execution` with ``status`` ``"timeout"`` (exit code 124) or
``"killed"`` (exit code 137).
"""

from typing import Any, Dict, Optional, Type


class SandboxError(Exception):
    """Base class of every error raised by the SDK.

    Attributes:
        code: the daemon's JSON-RPC error code, or None for client-side errors.
        daemon_message: the daemon's ``error.message``, or None.
        data: the daemon's ``error.data`` (often a dict), or None.
    """

    def __init__(self, message: str, code: Optional[int] = None,
                 daemon_message: Optional[str] = None, data: Any = None):
        super().__init__(message)
        self.code = code
        self.daemon_message = daemon_message
        self.data = data


class DaemonError(SandboxError):
    """The daemon could not be started, died, or broke the protocol.

    Also raised for the daemon's own protocol and internal errors
    (-32700, -32600, -32601, -32603).
    """


class SandboxDeadError(SandboxError):
    """The sandbox is gone: timed out, killed, closed (-32002) or unknown (-32001)."""


class PathError(SandboxError):
    """A workspace path was refused (-32003): outside the workspace, a symlink,
    not a regular file, or too large."""


class IsolationError(SandboxError):
    """Isolation is unavailable (-32004): a jail layer is missing, or the
    requested tier does not exist on this daemon."""


class BusyError(SandboxError):
    """The sandbox is already running other code (-32005)."""


class ResourceError(SandboxError):
    """The daemon could not create the sandbox (-32006): fork, cgroup, disk."""


class AuditError(SandboxError):
    """The audit log cannot be written (-32007): the daemon fails closed and
    the action was not carried out or is not confirmed."""


class InvalidArgument(SandboxError, ValueError):
    """An argument was refused, by the SDK before sending or by the daemon (-32602)."""

    def __init__(self, message: str, code: Optional[int] = -32602,
                 daemon_message: Optional[str] = None, data: Any = None):
        super().__init__(message, code, daemon_message, data)


_BY_CODE: Dict[int, Type[SandboxError]] = {
    -32700: DaemonError,
    -32600: DaemonError,
    -32601: DaemonError,
    -32603: DaemonError,
    -32001: SandboxDeadError,
    -32002: SandboxDeadError,
    -32003: PathError,
    -32004: IsolationError,
    -32005: BusyError,
    -32006: ResourceError,
    -32007: AuditError,
    -32602: InvalidArgument,
}


def error_from_response(method: str, error: Any) -> SandboxError:
    """Builds the exception for a JSON-RPC ``error`` member returned to ``method``."""
    if not isinstance(error, dict):
        return DaemonError(f"{method}: the daemon sent a malformed error object: {error!r}")
    code = error.get("code")
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = "(the daemon gave no message)"
    data = error.get("data")
    cls = _BY_CODE.get(code, SandboxError) if isinstance(code, int) else SandboxError
    text = f"{method} failed: {message} (daemon error {code})"
    if data not in (None, {}, []):
        text += f"; details: {data}"
    return cls(text, code=code if isinstance(code, int) else None,
               daemon_message=message, data=data)
