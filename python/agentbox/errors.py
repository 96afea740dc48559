"""Exceptions raised by the agentbox SDK.

Every exception derives from :class:`SandboxError`. Errors that come from the
daemon carry its JSON-RPC error ``code``, its plain-English ``daemon_message``
and its optional ``data``; errors detected by the SDK itself have ``code``
``None`` (except :class:`InvalidArgument`, which uses -32602 either way).

A run that times out or is killed is *not* an exception: it is a normal
:class:`agentbox.Execution` with ``status`` ``"timeout"`` (exit code 124) or
``"killed"`` (exit code 137).
"""

from typing import Any, Dict, Iterable, Optional, Type


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


class InvalidArgumentType(InvalidArgument, TypeError):
    """An argument of the wrong type, refused by the SDK before sending: a
    :class:`TypeError` (as Python's own calls raise) that is also an
    :class:`InvalidArgument`, so either ``except`` catches it."""


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


class DegradedWarning(UserWarning):
    """The sandbox runs without some isolation layers (the daemon was started
    with ``--degrade``): emitted once per sandbox, naming each missing layer
    and what it leaves unenforced. ``layers`` lists them."""

    def __init__(self, message: str, layers: Iterable[str] = ()):
        super().__init__(message)
        self.layers = list(layers)


#: What a sandbox loses without each layer (the CLI says the same, from
#: ab_layer_consequence in src/lib/layers.c).
LAYER_CONSEQUENCES: Dict[str, str] = {
    "userns": "sandbox root is not separated from host users",
    "pidns": "the code can see and signal host processes",
    "mountns": "the code shares the host's mounts",
    "netns": "the code can use the host's network",
    "ipcns": "the code shares the host's System V IPC and POSIX queues",
    "utsns": "the code can change the host's hostname",
    "cgroupns": "the code sees the host's cgroup tree",
    "pivot_root": "the code sees the host's file system",
    "no_new_privs": "setuid programs can gain privileges",
    "caps": "capabilities are not dropped",
    "seccomp": "system calls are not filtered",
    "landlock": "file access is not restricted by Landlock",
    "cgroup": "memory, CPU and process limits are NOT enforced",
    "rlimits": "per-process resource limits are not set",
}

#: Isolation layers a daemon may be told to run without (agentboxd --degrade).
LAYERS = tuple(LAYER_CONSEQUENCES)


def degraded_message(sandbox: str, layers: Iterable[str]) -> str:
    """The text of the DegradedWarning for sandbox."""
    parts = [f"{name} ({LAYER_CONSEQUENCES.get(name, 'an isolation layer is missing')})"
             for name in layers]
    return (f"sandbox {sandbox} is NOT fully isolated: the daemon runs without "
            + "; ".join(parts) + ". It was started with --degrade; `agentbox doctor` "
            "says how to provide the missing layers.")
