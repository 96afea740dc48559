"""JSON-RPC transport to agentboxd (see docs/protocol.md).

One :class:`Connection` carries the requests of every Sandbox that uses it.
A reader thread reads one JSON object per line and hands each response to the
caller waiting for its id, through a per-call queue; ``sandbox.output`` and
``sandbox.rerun`` notifications go to the queue of the run whose request id
they name, so that output callbacks run in the caller's own thread, never in
the reader thread. A KeyboardInterrupt while a run waits sends
``sandbox.interrupt`` for it (:meth:`Connection.call`).

By default the SDK starts one private ``agentboxd --stdio`` per Python
process (one per ``degrade=`` set), lazily, and stops it at interpreter exit.
``url=`` or ``$AGENTBOX_SOCKET`` connects to a running daemon's unix socket
instead (one shared connection per socket). docs/environment.md lists the
environment variables.
"""

import atexit
import itertools
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import LAYERS, DaemonError, InvalidArgument, error_from_response

#: A line from the daemon may be at most this long (the protocol's cap).
MAX_LINE = 16 << 20
#: How long a call other than sandbox.run may wait for its response.
CALL_TIMEOUT_S = 300.0
#: How long sandbox.run may wait beyond the run's own timeout before the SDK
#: gives up on the daemon.
RUN_GRACE_S = 60.0
#: How long atexit waits for a private daemon to exit after closing its stdin.
STOP_WAIT_S = 5.0

#: Notifications forwarded to the call whose request they name.
RUN_NOTIFICATIONS = ("sandbox.output", "sandbox.rerun")

NotifyFn = Callable[[str, Dict[str, Any]], None]


def _describe_exit(status: Optional[int]) -> str:
    if status is None:
        return "is no longer answering"
    if status < 0:
        return f"was killed by signal {-status}"
    return f"exited with status {status}"


#: Where an installed agentboxd is looked for after $PATH (make install's
#: default prefix first).
STANDARD_DIRS = ("/usr/local/bin", "/usr/bin")


def find_daemon(environ: Optional[Dict[str, str]] = None,
                source_root: Optional[Path] = None,
                explicit: Optional[str] = None) -> str:
    """Returns the path of the agentboxd executable to start.

    Looks, in order, at ``explicit`` (the ``daemon=`` argument),
    ``$AGENTBOX_DAEMON`` (the executable), ``$AGENTBOX_BIN`` (a directory
    holding ``agentboxd``, or the executable itself), ``agentboxd`` on
    ``$PATH``, ``<source tree>/build/agentboxd`` when the SDK runs from the
    repository, then /usr/local/bin and /usr/bin (docs/environment.md).
    An explicit choice that is not usable is an error, not skipped. Raises
    DaemonError naming every place searched and how to fix it if none is
    usable.
    """
    env = os.environ if environ is None else environ
    root = Path(__file__).resolve().parents[2] if source_root is None else source_root
    searched: List[str] = []

    def usable(p: Path) -> bool:
        return p.is_file() and os.access(p, os.X_OK)

    for what, value in (("daemon=", explicit), ("AGENTBOX_DAEMON", env.get("AGENTBOX_DAEMON")),
                        ("AGENTBOX_BIN", env.get("AGENTBOX_BIN"))):
        if not value:
            searched.append(f"{what} (not set)" if what != "daemon=" else "daemon= (not given)")
            continue
        p = Path(os.fspath(value))
        cand = p / "agentboxd" if p.is_dir() else p
        if usable(cand):
            return str(cand)
        raise DaemonError(
            f"{what}{'' if what.endswith('=') else '='}{value} does not name an executable "
            f"agentboxd (checked {cand}); fix it, or unset it to search $PATH and the "
            f"standard places")

    found = shutil.which("agentboxd", path=env.get("PATH", os.defpath))
    if found:
        return found
    searched.append(f"agentboxd on $PATH ({env.get('PATH', '') or 'empty'})")

    if (root / "Makefile").is_file() and (root / "python" / "agentbox").is_dir():
        cand = root / "build" / "agentboxd"
        if usable(cand):
            return str(cand)
        searched.append(str(cand) + " (this source tree's build; run `make`)")

    for d in STANDARD_DIRS:
        cand = Path(d) / "agentboxd"
        if usable(cand):
            return str(cand)
        searched.append(str(cand))
    raise DaemonError("cannot find the agentboxd daemon; looked at: " + "; ".join(searched)
                      + ". Install it (`make install PREFIX=/usr/local` in the source tree) "
                      "and put its bin/ on $PATH, or set AGENTBOX_BIN to the directory "
                      "that holds agentboxd.")


class _Call:
    """One request in flight: the reader thread posts to its queue."""

    __slots__ = ("method", "queue")

    def __init__(self, method: str):
        self.method = method
        self.queue: "queue.Queue[Tuple[str, Any]]" = queue.Queue()


class Connection:
    """A JSON-RPC connection to one daemon, shared by many Sandbox objects.

    ``reader`` is a binary file object to read lines from; ``write`` sends one
    encoded line; ``on_close`` releases the underlying resources.
    """

    def __init__(self, name: str, reader, write: Callable[[bytes], None],
                 on_close: Callable[[], None]):
        self.name = name
        self.owner_pid = os.getpid()
        self._reader = reader
        self._write = write
        self._on_close = on_close
        self._ids = itertools.count(1)
        self._calls: Dict[int, _Call] = {}
        self._lock = threading.Lock()        # guards _calls and _dead
        self._write_lock = threading.Lock()  # serialises whole lines
        self._dead: Optional[DaemonError] = None
        self._thread = threading.Thread(target=self._read_loop,
                                        name=f"agentbox-reader {name}", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------- state
    @property
    def alive(self) -> bool:
        """False once the connection failed or was closed."""
        return self._dead is None and self.owner_pid == os.getpid()

    def _death_reason(self) -> str:
        """Why the peer went away (overridden for a private daemon)."""
        return f"the daemon at {self.name} closed the connection"

    def fail(self, error: DaemonError) -> None:
        """Marks the connection dead, fails every call in flight with error
        and releases the transport. Idempotent."""
        with self._lock:
            if self._dead is not None:
                return
            self._dead = error
            calls = list(self._calls.values())
            self._calls.clear()
        for c in calls:
            c.queue.put(("dead", error))
        try:
            self._on_close()
        except Exception:
            pass

    # ----------------------------------------------------------- reading
    def _read_loop(self) -> None:
        while True:
            try:
                line = self._reader.readline(MAX_LINE + 1)
            except (OSError, ValueError) as e:
                self.fail(DaemonError(f"reading from the daemon at {self.name} failed: {e}"))
                return
            if not line:
                self.fail(DaemonError(self._death_reason()))
                return
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                self.fail(DaemonError(f"protocol violation: the daemon at {self.name} "
                                      f"sent a line longer than {MAX_LINE} bytes"))
                return
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError as e:
                self.fail(DaemonError(f"protocol violation: the daemon at {self.name} sent "
                                      f"a line that is not JSON ({e}): {line[:200]!r}"))
                return
            problem = self._dispatch(msg)
            if problem:
                self.fail(DaemonError(f"protocol violation: the daemon at {self.name} "
                                      f"{problem}: {line[:200]!r}"))
                return

    def _dispatch(self, msg: Any) -> Optional[str]:
        """Routes one message; returns a description of a violation, or None."""
        if not isinstance(msg, dict):
            return "sent a JSON value that is not an object"
        if "method" in msg and "id" not in msg:
            params = msg.get("params")
            if msg["method"] in RUN_NOTIFICATIONS and isinstance(params, dict):
                with self._lock:
                    call = self._calls.get(params.get("request"))  # type: ignore[arg-type]
                if call is not None:
                    call.queue.put(("notify", (msg["method"], params)))
            return None  # unknown notifications are ignored (forward compatibility)
        if "id" not in msg or ("result" not in msg and "error" not in msg):
            return "sent a message that is neither a response nor a notification"
        if msg["id"] is None and isinstance(msg.get("error"), dict):
            # The daemon could not read one of our requests, and cannot say
            # which: every pending call would otherwise wait forever.
            return f"could not read a request: {msg['error'].get('message')}"
        with self._lock:
            call = self._calls.pop(msg["id"], None) if isinstance(msg["id"], int) else None
        if call is None:
            return None  # a response to a call we gave up waiting for
        if "error" in msg and msg["error"] is not None:
            call.queue.put(("error", error_from_response(call.method, msg["error"])))
        else:
            call.queue.put(("result", msg.get("result")))
        return None

    # ----------------------------------------------------------- writing
    def _send(self, obj: Dict[str, Any], blocking: bool = True) -> bool:
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        if not self._write_lock.acquire(blocking):
            return False
        try:
            self._write(line)
        except (OSError, ValueError) as e:
            self.fail(DaemonError(f"{self._death_reason()} (write failed: {e})"))
            return False
        finally:
            self._write_lock.release()
        return True

    def notify(self, method: str, params: Dict[str, Any]) -> None:
        """Sends a notification (no response) without ever blocking; best effort.
        Used from __del__, which may run in any thread at any time."""
        if self.alive:
            self._send({"jsonrpc": "2.0", "method": method, "params": params}, blocking=False)

    def _send_interrupt(self, req_id: int) -> None:
        """Asks the daemon to interrupt the run of request req_id. Its
        answer is not waited for: the run's own result says what happened."""
        call = _Call("sandbox.interrupt")
        with self._lock:
            if self._dead is not None:
                return
            iid = next(self._ids)
            self._calls[iid] = call
        self._send({"jsonrpc": "2.0", "id": iid, "method": "sandbox.interrupt",
                    "params": {"request": req_id}})

    def call(self, method: str, params: Dict[str, Any], timeout: Optional[float] = None,
             on_notify: Optional[NotifyFn] = None, interruptible: bool = False) -> Any:
        """Sends a request and waits for its result.

        ``timeout`` bounds the wait (default CALL_TIMEOUT_S); past it the call
        raises DaemonError. ``on_notify`` is called in this thread with the
        method and params of each ``sandbox.output`` and ``sandbox.rerun``
        notification for this request; if it raises, the call still waits
        for the result, then re-raises.

        ``interruptible`` (runs): a KeyboardInterrupt while waiting sends
        ``sandbox.interrupt`` for this request, waits for the run's result
        and re-raises the KeyboardInterrupt with that result as its
        ``agentbox_result`` attribute. A second KeyboardInterrupt stops
        waiting at once.
        Raises the SandboxError subclass matching the daemon's error code.
        """
        if self.owner_pid != os.getpid():
            raise DaemonError("this daemon connection belongs to the parent process "
                              "(the process forked); create a new Sandbox")
        call = _Call(method)
        with self._lock:
            if self._dead is not None:
                raise DaemonError(f"{method}: {self._dead}")
            req_id = next(self._ids)
            self._calls[req_id] = call
        if not self._send({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}):
            with self._lock:
                self._calls.pop(req_id, None)
            raise DaemonError(f"{method}: {self._dead}")
        wait = CALL_TIMEOUT_S if timeout is None else timeout
        deadline = time.monotonic() + wait
        callback_error: Optional[BaseException] = None
        interrupted: Optional[KeyboardInterrupt] = None
        while True:
            remaining = deadline - time.monotonic()
            try:
                try:
                    kind, value = call.queue.get(timeout=max(remaining, 0.0))
                except queue.Empty:
                    with self._lock:
                        self._calls.pop(req_id, None)
                    raise DaemonError(f"{method}: the daemon at {self.name} did not answer "
                                      f"within {wait:g} s") from None
                if kind == "notify":
                    if on_notify is not None and callback_error is None:
                        try:
                            on_notify(*value)
                        except KeyboardInterrupt:
                            raise
                        except BaseException as e:  # re-raised once the call is complete
                            callback_error = e
                    continue
            except KeyboardInterrupt as e:
                if not interruptible or interrupted is not None:
                    with self._lock:
                        self._calls.pop(req_id, None)
                    raise
                interrupted = e
                self._send_interrupt(req_id)
                continue
            if interrupted is not None:
                if kind == "result":
                    interrupted.agentbox_result = value  # type: ignore[attr-defined]
                raise interrupted
            if callback_error is not None:
                raise callback_error
            if kind == "result":
                return value
            if kind == "dead":
                raise DaemonError(f"{method}: {value}") from None
            raise value

    def close(self) -> None:
        """Closes the connection; calls in flight fail with DaemonError."""
        self.fail(DaemonError(f"the connection to {self.name} was closed by the client"))


#: How much of a private daemon's stderr is kept to explain its death.
STDERR_TAIL = 8192


class PrivateDaemon(Connection):
    """A private ``agentboxd --stdio`` child, talked to over its stdin/stdout.

    Its stderr is read by a thread: the last STDERR_TAIL bytes explain why it
    ended (e.g. a missing isolation layer), and every line is passed on to
    this process's stderr as the daemon wrote it."""

    def __init__(self, path: str, degrade: Tuple[str, ...] = ()):
        argv = [path, "--stdio"]
        if degrade:
            argv += ["--degrade", ",".join(degrade)]
        try:
            # A session of its own: a Ctrl-C at the terminal interrupts the
            # Python program, not the daemon with every sandbox in it.
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         close_fds=True, start_new_session=True)
        except OSError as e:
            raise DaemonError(f"could not start the daemon {path}: {e}") from None
        self.degrade = degrade
        self._stderr_tail = b""
        self._stderr_thread = threading.Thread(target=self._read_stderr,
                                               name=f"agentbox-stderr {self.proc.pid}",
                                               daemon=True)
        self._stderr_thread.start()
        stdin = self.proc.stdin

        def write(line: bytes) -> None:
            stdin.write(line)
            stdin.flush()

        super().__init__(f"{path} (pid {self.proc.pid})", self.proc.stdout, write, self._stop)

    def _read_stderr(self) -> None:
        err = self.proc.stderr
        while True:
            try:
                line = err.readline(STDERR_TAIL)
            except (OSError, ValueError):
                return
            if not line:
                return
            self._stderr_tail = (self._stderr_tail + line)[-STDERR_TAIL:]
            try:
                sys.stderr.write(line.decode("utf-8", "replace"))
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):
                pass

    def _death_reason(self) -> str:
        try:
            status = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            status = None
        self._stderr_thread.join(2)
        text = f"the daemon {self.name} {_describe_exit(status)}"
        said = self._stderr_tail.decode("utf-8", "replace").strip()
        if said:
            text += ": " + said
            if "--degrade " in said:
                text += (" (from Python: Sandbox(degrade=[...]) or agentbox.run(..., "
                         "degrade=[...]) starts the private daemon with --degrade)")
        return text

    def _stop(self) -> None:
        """Closes stdin (the daemon's cue to exit), waits, then kills."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


class SocketConnection(Connection):
    """A connection to a running daemon's unix socket."""

    def __init__(self, path: str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise DaemonError(f"cannot connect to the daemon socket {path}: {e}") from None
        self.sock = sock
        reader = sock.makefile("rb")

        def on_close() -> None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

        super().__init__(f"unix:{path}", reader, sock.sendall, on_close)


def socket_path(url: Any) -> str:
    """Returns the socket path named by ``unix:///path`` or a plain path."""
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url:
        raise InvalidArgument(f"url must be 'unix:///path/to.sock' or a socket path, got {url!r}")
    if url.startswith("unix://"):
        url = url[len("unix://"):]
    elif "://" in url:
        raise InvalidArgument(f"url {url!r}: only unix:// sockets are supported by this SDK")
    if not url:
        raise InvalidArgument("url 'unix://' names no socket path")
    return url


_registry_lock = threading.Lock()
_private: Dict[Tuple[str, Tuple[str, ...]], PrivateDaemon] = {}
_sockets: Dict[str, SocketConnection] = {}


def check_degrade(degrade: Any) -> Tuple[str, ...]:
    """Validates a ``degrade=`` argument (layer names); returns them as a tuple."""
    if degrade is None:
        return ()
    if isinstance(degrade, str):
        degrade = [degrade]
    if not isinstance(degrade, (list, tuple, set, frozenset)):
        raise InvalidArgument(f"degrade must be a list of layer names, got "
                              f"{type(degrade).__name__}")
    out = []
    for name in degrade:
        if not isinstance(name, str) or name not in LAYERS:
            raise InvalidArgument(f"degrade: unknown isolation layer {name!r} "
                                  f"(layers: {', '.join(LAYERS)})")
        if name not in out:
            out.append(name)
    return tuple(sorted(out))


def connection(url: Any = None, daemon: Optional[str] = None,
               degrade: Tuple[str, ...] = ()) -> Connection:
    """Returns the live shared connection for url, starting or reconnecting as
    needed. Without url, $AGENTBOX_SOCKET names a shared daemon's socket; if
    it is not set either, a private daemon is started (one per daemon path
    and degrade set). degrade is refused for a shared daemon: which layers it
    may run without is its operator's decision."""
    if url is None:
        url = os.environ.get("AGENTBOX_SOCKET") or None
    with _registry_lock:
        if url is None:
            path = find_daemon(explicit=daemon)
            key = (path, degrade)
            conn = _private.get(key)
            if conn is None or not conn.alive:
                conn = _private[key] = PrivateDaemon(path, degrade)
            return conn
        if degrade:
            raise InvalidArgument(
                f"degrade={list(degrade)}: the daemon on {url} is shared, and which "
                f"isolation layers it may run without is its operator's decision "
                f"(agentboxd --degrade); degrade= applies only to the private daemon the "
                f"SDK starts when neither url= nor $AGENTBOX_SOCKET is given")
        path = socket_path(url)
        conn = _sockets.get(path)
        if conn is None or not conn.alive:
            conn = _sockets[path] = SocketConnection(path)
        return conn


def shutdown() -> None:
    """Stops the private daemon and closes every socket connection.

    Registered with atexit; safe to call at any time (the next Sandbox starts
    a new daemon)."""
    with _registry_lock:
        conns: List[Connection] = list(_sockets.values()) + list(_private.values())
        _private.clear()
        _sockets.clear()
    for c in conns:
        if c.owner_pid == os.getpid():
            c.close()


atexit.register(shutdown)

