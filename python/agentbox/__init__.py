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

Network (docs/egress.md). Code in a sandbox reaches the network only
through the daemon's egress proxy, and only where a rule allows::

    with Sandbox(network=["api.github.com", {"host": "*.python.org",
                                             "methods": ["GET"]}]) as box:
        with box.intent("docs-lookup", reason="read the pandas docs"):
            box.run("import requests; requests.get('https://docs.python.org/3/')")
        if box.request_access("pypi.org", reason="pip download", timeout=60) == "allowed":
            ...

Inside the sandbox ``HTTP_PROXY``, ``HTTPS_PROXY`` (and lower case) are
``http://127.0.0.1:3128``, ``NO_PROXY`` is ``localhost,127.0.0.1,::1``, and
``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` and
``PIP_CERT`` name a CA bundle that trusts the proxy, which inspects HTTPS.
``requests``, ``urllib``, ``pip`` and ``curl`` use them as they are; code
that ignores them (raw sockets, its own DNS) has no route: there is no
resolver and no other interface than ``lo``. A refused request gets HTTP 403
with an ``X-Agentbox-Denied`` header and a JSON body saying what was denied,
why, and how to ask (:meth:`Sandbox.request_access` or
:meth:`Sandbox.set_intent`). Only the heavy tier has a network.
"""

from ._transport import shutdown as shutdown_daemon
from .errors import (BusyError, DaemonError, InvalidArgument, InvalidArgumentType,
                     IsolationError, PathError, ResourceError, SandboxDeadError, SandboxError,
                     AuditError, DegradedWarning)
from .sandbox import (AccessDecision, Execution, ExecutionError, Files, Sandbox, daemon_info,
                      run)

__version__ = "0.1.0"

__all__ = [
    "Sandbox", "Execution", "ExecutionError", "Files", "AccessDecision", "run", "daemon_info",
    "shutdown_daemon", "SandboxError", "DaemonError", "SandboxDeadError", "PathError",
    "IsolationError", "BusyError", "ResourceError", "AuditError", "InvalidArgument",
    "InvalidArgumentType", "DegradedWarning",
    "__version__",
]
