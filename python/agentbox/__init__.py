"""agentbox: run untrusted Python in an isolated sandbox (EnterSandBox).

    from agentbox import Sandbox

    with Sandbox(timeout=10, memory_mb=512) as box:
        result = box.run("import math; print(math.pi)")
        print(result.stdout, result.exit_code)

The SDK is a client of the ``agentboxd`` daemon. By default it starts one
private daemon per Python process (found through ``daemon=``,
``$AGENTBOX_DAEMON``, ``$AGENTBOX_BIN``, ``agentboxd`` on ``$PATH``, the
source tree's ``build/``, then /usr/local/bin and /usr/bin; see
docs/environment.md) and stops it at exit;
``Sandbox(url="unix:///run/agentbox.sock")`` or ``$AGENTBOX_SOCKET`` uses a
running daemon. A sandbox whose daemon runs without some isolation layers
emits a :class:`DegradedWarning` once.
"""

from ._transport import shutdown as shutdown_daemon
from .errors import (BusyError, DaemonError, InvalidArgument, IsolationError, PathError,
                     ResourceError, SandboxDeadError, SandboxError,
                     AuditError, DegradedWarning)
from .sandbox import Execution, ExecutionError, Files, Sandbox, daemon_info, run

__version__ = "0.1.0"

__all__ = [
    "Sandbox", "Execution", "ExecutionError", "Files", "run", "daemon_info", "shutdown_daemon",
    "SandboxError", "DaemonError", "SandboxDeadError", "PathError", "IsolationError",
    "BusyError", "ResourceError", "AuditError", "InvalidArgument", "DegradedWarning",
    "__version__",
]
