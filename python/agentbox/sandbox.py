"""The Sandbox, its files, and the Execution a run returns."""

import base64
import contextlib
import datetime
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import _transport
from .errors import (DaemonError, DegradedWarning, InvalidArgument, InvalidArgumentType,
                     SandboxDeadError, SandboxError, degraded_message)

TIERS = ("auto", "heavy", "nano")

OutputCallback = Callable[[str], None]
RerunCallback = Callable[[str], None]

#: The largest file the files API moves (the daemon's limit, which it enforces).
MAX_FILE_BYTES = 64 << 20
#: Bytes per ``sandbox.files.write`` part and per ``sandbox.files.read``
#: answer: with base64 (a third more) their lines stay well below the 16 MiB
#: line limit of the connection.
WRITE_PART_BYTES = 4 << 20
READ_PART_BYTES = 8 << 20
#: How often a read in parts starts over when the file changes under it.
READ_ATTEMPTS = 3

#: A rule of ``Sandbox(network=[...])``: a host pattern, or an object with
#: ``host`` and optionally ``methods``, ``paths``, ``ports``,
#: ``max_bytes_out``, ``websocket``, ``report`` (docs/egress.md, "Rules").
Rule = Union[str, Dict[str, Any]]
#: The longest :meth:`Sandbox.request_access` may wait (the daemon's bound).
ACCESS_TIMEOUT_MAX_S = 3600
#: How long :meth:`Sandbox.request_access` waits for the daemon's answer
#: beyond its own ``timeout`` (which the daemon enforces).
ACCESS_GRACE_S = 30.0


def _check_number(name: str, value: Any, integer: bool, minimum: float,
                  maximum: Optional[float] = None) -> None:
    """Raises InvalidArgument unless value is a finite number >= minimum (and <= maximum)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        want = "an integer" if integer else "a number"
        raise InvalidArgument(f"{name} must be {want}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
        rng = f">= {minimum:g}" if maximum is None else f"between {minimum:g} and {maximum:g}"
        raise InvalidArgument(f"{name} must be {rng}, got {value!r}")


def _check_type(name: str, value: Any, integer: bool) -> None:
    """Raises InvalidArgument unless value is a finite number (an int if
    integer). Ranges are the daemon's to check (src/lib/limits.c): it refuses
    a value out of range with InvalidArgument naming the bounds, so that the
    SDK never disagrees with it."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        want = "an integer" if integer else "a number"
        raise InvalidArgument(f"{name} must be {want}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise InvalidArgument(f"{name} must be a finite number, got {value!r}")


def _check_timeout(name: str, value: Any) -> None:
    _check_type(name, value, integer=False)


def _warn_degraded(sandbox: str, layers: List[str]) -> None:
    """Emits the DegradedWarning for a sandbox (callers do it once per sandbox)."""
    warnings.warn(DegradedWarning(degraded_message(sandbox, layers), layers), stacklevel=3)


@dataclass
class ExecutionError:
    """The uncaught exception of a run: its type ``name``, ``value`` (str of
    the exception) and the formatted ``traceback``.

    ``frames`` is the state just before the error, captured in the sandbox
    as the exception left each frame: the frames of the traceback, outermost
    first, from the cell's own (``file`` ``"<cell-N>"``, function
    ``"<module>"``, whose locals are the session's globals without their
    ``__dunder__`` names) down to the frame that raised, library code
    included. Each is a dict::

        {"function": "b", "file": "<cell-3>", "line": 4,
         "locals": {"y": {"type": "int", "repr": "2"}}}

    with ``"locals_omitted": n`` when locals were left out. Bounds: at most
    16 frames (the first 4 and the innermost 12; ``frames_omitted`` counts
    the rest), 50 locals per frame (the first by name), reprs of at most 200
    characters (a longer one ends in ``"..."``; one that raised reads
    ``"<repr failed: ValueError>"``), about 64 KiB in all (the outer frames
    lose their locals first). ``frames`` is ``[]`` for an error without
    frames (a ``SyntaxError`` of the cell, ``SystemExit``, errors the daemon
    decided such as a kill), when the result had to shrink to fit the output
    limit (then ``frames_omitted`` says how many were dropped), and when what
    the sandbox sent was not of this shape. A ``"timeout"`` keeps the frames
    of the ``KeyboardInterrupt`` that stopped the cell: where it was when its
    time ran out. The reprs are the sandboxed code's own claims, like the
    rest of the error."""

    name: str = ""
    value: str = ""
    traceback: str = ""
    frames: List[Dict[str, Any]] = field(default_factory=list)
    frames_omitted: int = 0

    def __str__(self) -> str:
        return f"{self.name}: {self.value}" if self.value else self.name


@dataclass
class Execution:
    """The result of :meth:`Sandbox.run`.

    ``tier`` says where it ran and ``route_reason`` why. With tier
    ``"auto"``, ``promoted`` is True when the session moved to the heavy tier
    for this run, and ``promotion`` says why, which files were copied and
    which earlier steps were replayed. ``tier_hint`` explains a run that
    failed in a forced nano sandbox because it needs heavy.

    ``status`` is ``"ok"``, ``"error"`` (uncaught exception, see ``error``),
    ``"timeout"`` (exit code 124), ``"killed"`` (exit code 137; ``limit``
    says which limit, e.g. ``"memory"``) or ``"compromised"`` (exit code 137:
    another process spoke on the sandbox's control channel; the session was
    killed and nothing it reported is kept). ``value`` is the repr of the last
    expression, ``results`` the rich outputs (dicts mime type -> data, e.g.
    ``"image/png"`` base64). ``truncated`` says per stream whether output was
    cut at the sandbox's output limit.

    ``timeout`` bounds the whole call: the attempt in nano, a promotion
    (copy and replay) and the rerun in heavy. A run that exceeds it has
    ``status == "timeout"`` and ``phase`` says where the time ran out:
    ``"run"``, ``"promotion"`` or ``"promoted_run"``. ``attempt`` is 2 when
    a nano attempt was rerun in heavy (its streamed output was superseded).
    ``interrupted`` is True when the run was stopped by :meth:`Sandbox.run`'s
    handling of Ctrl-C (``sandbox.interrupt``).
    """

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    status: str = "ok"
    error: Optional[ExecutionError] = None
    value: Optional[str] = None
    results: List[Dict[str, str]] = field(default_factory=list)
    tier: Optional[str] = None
    route_reason: Optional[str] = None
    duration_ms: Optional[float] = None
    truncated: Dict[str, bool] = field(default_factory=dict)
    limit: Optional[str] = None
    degraded: List[str] = field(default_factory=list)
    step: Optional[int] = None
    promoted: bool = False
    promotion: Optional[Dict[str, Any]] = None
    tier_hint: Optional[str] = None
    interrupted: bool = False
    attempt: int = 1
    phase: Optional[str] = None

    @property
    def ok(self) -> bool:
        """True if the code ran to completion without an uncaught exception."""
        return self.status == "ok" and self.exit_code == 0

    @classmethod
    def from_result(cls, r: Dict[str, Any]) -> "Execution":
        """Builds an Execution from a ``sandbox.run`` result object."""
        if not isinstance(r, dict) or not isinstance(r.get("status"), str):
            raise DaemonError(f"sandbox.run: the daemon sent a malformed result: {r!r:.200}")
        err = r.get("error")
        error = None
        if isinstance(err, dict):
            frames = err.get("frames")
            omitted = err.get("frames_omitted")
            error = ExecutionError(
                str(err.get("name") or ""), str(err.get("value") or ""),
                str(err.get("traceback") or ""),
                frames=([f for f in frames if isinstance(f, dict)]
                        if isinstance(frames, list) else []),
                frames_omitted=omitted if type(omitted) is int and omitted >= 0 else 0)
        exit_code = r.get("exit_code")
        return cls(stdout=r.get("stdout") or "", stderr=r.get("stderr") or "",
                   exit_code=exit_code if isinstance(exit_code, int) else -1,
                   status=r["status"], error=error, value=r.get("value"),
                   results=list(r.get("results") or []), tier=r.get("tier"),
                   route_reason=r.get("route_reason"), duration_ms=r.get("duration_ms"),
                   truncated=dict(r.get("truncated") or {}), limit=r.get("limit"),
                   degraded=list(r.get("degraded") or []), step=r.get("step"),
                   promoted=r.get("promoted") is True,
                   promotion=r.get("promotion") if isinstance(r.get("promotion"), dict) else None,
                   tier_hint=r.get("tier_hint") if isinstance(r.get("tier_hint"), str) else None,
                   interrupted=r.get("interrupted") is True,
                   attempt=r["attempt"] if isinstance(r.get("attempt"), int) else 1,
                   phase=r.get("phase") if isinstance(r.get("phase"), str) else None)

    def __repr__(self) -> str:
        def short(s: Optional[str]) -> str:
            return repr(s if s is None or len(s) <= 60 else s[:57] + "...")
        parts = [f"status={self.status!r}", f"exit_code={self.exit_code}"]
        if self.tier:
            parts.append(f"tier={self.tier!r}" + (" (promoted)" if self.promoted else ""))
        if self.tier_hint:
            parts.append(f"tier_hint={self.tier_hint!r}")
        if self.error is not None:
            parts.append(f"error={str(self.error)!r}")
        if self.limit:
            parts.append(f"limit={self.limit!r}")
        if self.phase:
            parts.append(f"phase={self.phase!r}")
        if self.interrupted:
            parts.append("interrupted=True")
        parts += [f"stdout={short(self.stdout)}", f"stderr={short(self.stderr)}"]
        if self.value is not None:
            parts.append(f"value={short(self.value)}")
        if self.results:
            parts.append(f"results=[{len(self.results)} item(s)]")
        if self.duration_ms is not None:
            parts.append(f"duration_ms={self.duration_ms:.1f}")
        return "Execution(" + ", ".join(parts) + ")"


class Files:
    """The sandbox's workspace files (``/workspace`` inside the sandbox).

    Paths are relative to the workspace; absolute paths, ``..``, symlinks and
    special files are refused by the daemon with :class:`PathError`. Files
    of up to 64 MiB move in parts of a few MiB, transparently: no message
    comes near the connection's line limit, so a large file never costs the
    connection or its other sandboxes.
    """

    def __init__(self, box: "Sandbox", step: Optional[int] = None):
        self._box = box
        # files_at(step): the workspace as it was before that step, read-only
        self._at: Dict[str, Any] = {} if step is None else {"step": step}

    @staticmethod
    def _check_path(path: Any, allow_empty: bool = False) -> None:
        if not isinstance(path, str):
            raise InvalidArgument(f"path must be a str, got {type(path).__name__}")
        if not path and not allow_empty:
            raise InvalidArgument("path must not be empty")
        if "\x00" in path:
            raise InvalidArgument("path must not contain a NUL byte")

    def write(self, path: str, data: Union[str, bytes], mode: Optional[int] = None) -> int:
        """Writes data (text as UTF-8, or bytes) to path, creating parent
        directories; mode is a permission number such as 0o644. Returns the size.

        Files of up to 64 MiB; a larger one raises :class:`PathError` naming
        the limit. Data over 4 MiB is sent in parts of 4 MiB. The daemon puts
        the file in place (an atomic rename) only once all of it arrived: the
        sandbox and later reads see the previous file or the whole new one,
        never part of it, and a write that fails midway leaves the previous
        file as it was."""
        self._check_path(path)
        if self._at:
            raise InvalidArgument(f"files_at({self._at['step']}) is read-only: rewind to "
                                  f"change the past")
        if mode is not None:
            _check_number("mode", mode, integer=True, minimum=0, maximum=0o7777)
        if isinstance(data, str):
            # Short text keeps the plain-text form of the protocol.
            if len(data) <= WRITE_PART_BYTES // 4:
                return self._write_one(path, {"data": data}, mode)
            try:
                raw = data.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InvalidArgument(f"data cannot be encoded as UTF-8: {e}") from None
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
        else:
            raise InvalidArgument(f"data must be str or bytes, got {type(data).__name__}")
        if len(raw) <= WRITE_PART_BYTES:
            return self._write_one(path, {"data_b64": _b64(raw)}, mode)
        return self._write_parts(path, raw, mode)

    def _write_one(self, path: str, params: Dict[str, Any], mode: Optional[int]) -> int:
        params["path"] = path
        if mode is not None:
            params["mode"] = mode
        r = self._box._call("sandbox.files.write", params)
        return int(r.get("size", 0)) if isinstance(r, dict) else 0

    def _write_parts(self, path: str, raw: bytes, mode: Optional[int]) -> int:
        view = memoryview(raw)
        params: Dict[str, Any] = {"path": path, "data_b64": _b64(view[:WRITE_PART_BYTES]),
                                  "more": True}
        if mode is not None:
            params["mode"] = mode
        r = self._box._call("sandbox.files.write", params)
        upload = r.get("upload") if isinstance(r, dict) else None
        if not isinstance(upload, str):
            raise DaemonError(f"sandbox.files.write: the daemon does not take files in parts "
                              f"(no upload id for {path!r}): {r!r:.200}")
        offset = WRITE_PART_BYTES
        while offset < len(raw):
            end = min(offset + WRITE_PART_BYTES, len(raw))
            r = self._box._call("sandbox.files.write",
                                {"path": path, "upload": upload, "offset": offset,
                                 "data_b64": _b64(view[offset:end]), "more": end < len(raw)})
            offset = end
        return int(r.get("size", 0)) if isinstance(r, dict) else 0

    def read(self, path: str) -> bytes:
        """Returns the content of the workspace file path.

        Files of up to 64 MiB; a larger one raises :class:`PathError` naming
        the limit. A file over 8 MiB is read in parts of 8 MiB; if it changes
        between parts (the sandbox may be writing it), the read starts over,
        and after 3 attempts raises :class:`SandboxError`."""
        self._check_path(path)
        for _ in range(READ_ATTEMPTS):
            data = self._read_parts(path)
            if data is not None:
                return data
        raise SandboxError(f"files.read {path!r}: the file kept changing while it was read "
                           f"in parts ({READ_ATTEMPTS} attempts)")

    def _read_parts(self, path: str) -> Optional[bytes]:
        """Reads path in parts; None if it changed between them."""
        parts: List[bytes] = []
        offset = 0
        version: Any = None
        while True:
            r = self._box._call("sandbox.files.read",
                                {"path": path, "offset": offset, "length": READ_PART_BYTES,
                                 **self._at})
            try:
                chunk = base64.b64decode(r["data_b64"], validate=True)
                size = r["size"]
                if not isinstance(size, int) or isinstance(size, bool):
                    raise TypeError
            except (KeyError, TypeError, ValueError):
                raise DaemonError(f"sandbox.files.read: the daemon sent a malformed result "
                                  f"for {path!r}") from None
            if offset == 0:
                version = r.get("version")
            elif r.get("version") != version:
                return None
            parts.append(chunk)
            offset += len(chunk)
            if offset >= size:
                return b"".join(parts)
            if not chunk:
                return None

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """Returns the content of path decoded with encoding."""
        return self.read(path).decode(encoding)

    def list(self, path: str = "") -> List[Dict[str, Any]]:
        """Lists a workspace directory ("" is the root): dicts with name, type
        ("file", "dir", "symlink" or "other") and size."""
        self._check_path(path, allow_empty=True)
        r = self._box._call("sandbox.files.list", {"path": path, **self._at})
        entries = r.get("entries") if isinstance(r, dict) else None
        if not isinstance(entries, list):
            raise DaemonError(f"sandbox.files.list: the daemon sent a malformed result: {r!r:.200}")
        return entries


class Sandbox:
    """An isolated Python session run by agentboxd.

    Variables persist from one :meth:`run` to the next. Limits left as None
    take the daemon's defaults: ``timeout`` (seconds per run), ``memory_mb``,
    ``pids``, ``cpu`` (cores), ``disk_mb``. ``tier`` is ``"auto"``, ``"heavy"``
    or ``"nano"``. ``url`` (``"unix:///path.sock"`` or a path) uses a running
    daemon; by default a private daemon is started for this Python process.
    ``idle_timeout`` (seconds, 0 for never) closes the session after that
    long without a run or a files call; the daemon's default is 15 minutes.

    With ``tier="auto"`` (the default) the session starts in the nano tier
    and each run is routed: a cell that needs more (pandas, processes,
    network, file writes) moves the session to heavy, with its files and
    earlier steps (docs/router.md). ``tier`` then says ``"heavy"``.

    Use it as a context manager, or call :meth:`close`::

        with Sandbox(timeout=10) as box:
            print(box.run("print(6 * 7)").stdout)

    Limits are checked by the daemon, which refuses a value out of its range
    with :class:`InvalidArgument` naming the bounds (docs/limits.md).

    ``degrade`` (a list of layer names such as ``["cgroup"]``) lets the
    private daemon that the SDK starts run without those isolation layers,
    for hosts that lack them; it is refused with ``url`` or
    ``$AGENTBOX_SOCKET`` (a shared daemon's layers are its operator's
    decision). ``daemon`` is the path of the agentboxd to start (default:
    found as docs/environment.md says).

    ``network`` says where code in the sandbox may connect (docs/egress.md):
    ``"none"`` (the default) or a list of rules, each a host pattern
    (``"api.github.com"``, ``"*.example.org"``) or a dict such as
    ``{"host": "*.example.org", "methods": ["GET"], "paths": ["/v1/"],
    "ports": [443], "max_bytes_out": 1048576}``. A sandbox with a network
    runs in the heavy tier (``tier="nano"`` with a network is refused).
    Code inside reaches the network through the proxy that ``HTTP_PROXY``
    and ``HTTPS_PROXY`` name (see the package's docstring). Beyond these rules, :meth:`set_intent` (or
    ``with box.intent(...)``) allows the hosts of a named intent of the
    daemon's policy for a while, and :meth:`request_access` asks for one
    more host. Everything else is refused with HTTP 403 and a JSON body that
    says why and how to ask.

    ``dlp`` tightens what the egress proxy does with secrets and personal
    data found in what leaves (docs/dlp.md): a dict such as ``{"pii":
    "block", "detectors": {"email": "block"}}``, each action one of
    ``"off"``, ``"log"``, ``"redact"``, ``"block"``. The daemon's policy
    file sets the defaults (without one: secrets are blocked, personal data
    redacted); a sandbox can make them stricter, never weaker; an intent of
    the policy file may relax them while it lives.

    Attributes: ``id``, ``tier``, ``degraded`` (jail layers the daemon runs
    without, by operator choice; a :class:`DegradedWarning` is emitted once
    per sandbox when it is not empty), ``limits`` (the effective limits),
    ``route_reason``, ``network`` (the sandbox's own rules as the daemon
    normalized them), ``dlp`` (its DLP settings, or None), ``files``
    (:class:`Files`).

    Time travel (docs/time-travel.md): every run is a step, and the state it
    started in is kept (heavy tier: a parked copy of the interpreter).
    :meth:`history` lists the steps, :meth:`rewind` makes the session's
    state the one before a step (later steps stay in the history as a
    branch), :meth:`inspect` evaluates an expression in a copy of that state
    without touching the session, and :meth:`diff` compares the variables
    before two steps. ``snapshots`` caps how many parked copies are kept
    (default 8: each live copy makes the next fork and the next run's
    copy-on-write faults dearer; fewer under a small ``pids`` limit); the
    oldest go first, and so do they when the sandbox nears its memory limit;
    0 keeps none (runs then cost no fork). A state without a copy is made
    again by replay (:meth:`fork`)."""

    def __init__(self, tier: str = "auto", timeout: Optional[float] = None,
                 memory_mb: Optional[int] = None, pids: Optional[int] = None,
                 cpu: Optional[float] = None, disk_mb: Optional[int] = None,
                 url: Optional[str] = None, idle_timeout: Optional[float] = None,
                 degrade: Optional[List[str]] = None, daemon: Optional[str] = None,
                 network: Union[str, Sequence[Rule], None] = None,
                 dlp: Optional[Dict[str, Any]] = None, snapshots: Optional[int] = None):
        self._closed = True  # until created, so that __del__ has nothing to do
        params = _session_params(tier, timeout, memory_mb, pids, cpu, disk_mb, url)
        if snapshots is not None:
            _check_number("snapshots", snapshots, integer=True, minimum=0, maximum=256)
            params["snapshots"] = snapshots
        layers = _transport.check_degrade(degrade)
        if idle_timeout is not None:
            _check_type("idle_timeout", idle_timeout, integer=False)
            params["idle_timeout"] = idle_timeout
        if network is not None:
            params["network"] = _check_network(network)
        if dlp is not None:
            if not isinstance(dlp, dict):
                raise InvalidArgumentType(
                    f"dlp must be a dict such as {{\"pii\": \"block\"}}, got "
                    f"{type(dlp).__name__}")
            params["dlp"] = dlp
        self._conn = _transport.connection(url, daemon=daemon, degrade=layers)
        r = self._conn.call("sandbox.create", params)
        if not isinstance(r, dict) or not isinstance(r.get("sandbox"), str):
            raise DaemonError(f"sandbox.create: the daemon sent a malformed result: {r!r:.200}")
        self.id: str = r["sandbox"]
        self.tier: Optional[str] = r.get("tier")
        self.route_reason: Optional[str] = r.get("route_reason")
        self.degraded: List[str] = list(r.get("degraded") or [])
        self.limits: Dict[str, Any] = dict(r.get("limits") or params.get("limits") or {})
        self.network: Any = r.get("network", params.get("network", "none"))
        self.dlp: Optional[Dict[str, Any]] = r.get("dlp")
        self.files = Files(self)
        # The intent this object last set: (name, reason, expires_at).
        self._intent: Optional[Tuple[str, Optional[str], Any]] = None
        self._closed = False
        self._warned_degraded = bool(self.degraded)
        if self.degraded:
            _warn_degraded(self.id, self.degraded)

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    def _call(self, method: str, params: Dict[str, Any], **kw: Any) -> Any:
        if self._closed:
            raise SandboxDeadError(f"{method}: sandbox {getattr(self, 'id', '?')} is closed")
        if not self._conn.alive:
            raise DaemonError(f"{method}: the daemon that held sandbox {self.id} is gone "
                              f"({self._conn.name}); create a new Sandbox")
        return self._conn.call(method, dict(params, sandbox=self.id), **kw)

    def run(self, code: str, timeout: Optional[float] = None,
            on_stdout: Optional[OutputCallback] = None,
            on_stderr: Optional[OutputCallback] = None,
            on_rerun: Optional[RerunCallback] = None) -> Execution:
        """Runs code in the sandbox and returns its :class:`Execution`.

        ``timeout`` (seconds) overrides the sandbox's timeout for this run; it
        bounds the whole call, a promotion to heavy included. A run that
        exceeds it returns status ``"timeout"``, exit code 124 (it does not
        raise). ``on_stdout``/``on_stderr`` are called, in the calling
        thread, with each chunk of text as it streams, in every tier.

        With tier ``"auto"`` a run that fails in nano for lack of the heavy
        tier is run again in heavy: ``on_rerun`` (if given) is then called
        with the reason, and the output streamed before it came from the
        superseded nano attempt; the result holds only the rerun's output.

        Ctrl-C (KeyboardInterrupt) during the run interrupts it: the SDK
        sends ``sandbox.interrupt``, the cell gets a KeyboardInterrupt in the
        sandbox (a promotion in progress is abandoned; the session stays in
        nano), the SDK waits for the run's result and re-raises the
        KeyboardInterrupt with that :class:`Execution` as its ``execution``
        attribute. The session survives and the next run works. A second
        Ctrl-C stops waiting at once; the session is then busy until the
        interrupted run has ended.
        """
        if not isinstance(code, str):
            raise InvalidArgument(f"code must be a str, got {type(code).__name__}")
        _check_callbacks(on_stdout, on_stderr, on_rerun)
        params: Dict[str, Any] = {"code": code}
        if timeout is not None:
            _check_timeout("timeout", timeout)
            params["timeout"] = timeout
        effective = timeout if timeout is not None else self.limits.get("timeout")
        try:
            r = self._call("sandbox.run", params,
                           on_notify=_output_router(on_stdout, on_stderr, on_rerun),
                           timeout=_wait_for(effective), interruptible=True)
        except KeyboardInterrupt as e:
            ex = _interrupted_execution(e)
            if ex is not None and ex.tier:
                self.tier = ex.tier
            raise
        ex = Execution.from_result(r)
        if ex.tier:
            self.tier = ex.tier  # an auto session may have moved to heavy
        if ex.degraded and not self._warned_degraded:
            self._warned_degraded = True
            _warn_degraded(self.id, ex.degraded)
        return ex

    # ------------------------------------------------------------ egress

    def set_intent(self, name: Optional[str], reason: Optional[str] = None) -> Dict[str, Any]:
        """Declares what the code in this sandbox is about to do, so that the
        network allows what that needs: ``name`` is an intent of the daemon's
        policy file (e.g. ``"docs-lookup"``), whose rules are added to the
        sandbox's own until the intent's time to live runs out; ``reason``
        (free text) is recorded in the audit log. ``None`` clears the intent.
        Setting one replaces the one before.

        Returns the daemon's answer: a dict with ``sandbox``, ``intent``,
        ``expires_at`` (when the intent lapses) and ``rules`` (what it
        allows). An intent the policy does not define raises
        :class:`InvalidArgument` naming the intents that exist; after it
        expires, requests it covered are refused again (set it again)."""
        if name is not None:
            _check_str("name", name)
        if reason is not None:
            _check_str("reason", reason, empty=True)
        params: Dict[str, Any] = {"intent": name}
        if reason is not None:
            params["reason"] = reason
        r = self._call("egress.intent", params)
        if not isinstance(r, dict) or "intent" not in r:
            raise DaemonError(f"egress.intent: the daemon sent a malformed result: {r!r:.200}")
        active = r.get("intent")
        self._intent = (active, reason, r.get("expires_at")) if isinstance(active, str) else None
        return r

    @contextlib.contextmanager
    def intent(self, name: str, reason: Optional[str] = None) -> Iterator[Dict[str, Any]]:
        """``with box.intent("docs-lookup", reason="read the pandas docs"):``
        sets the intent for the body of the ``with`` (as :meth:`set_intent`,
        whose result it yields) and afterwards puts back the intent that this
        object had set before, or clears it, also when the body raises. An
        earlier intent that has expired meanwhile is not renewed: the intent
        is cleared instead. If putting it back fails after the body raised,
        the body's exception is raised, with a note saying so."""
        previous = self._intent
        result = self.set_intent(name, reason)
        try:
            yield result
        except BaseException as body_error:
            try:
                self._restore_intent(previous)
            except SandboxError as e:
                add_note = getattr(body_error, "add_note", None)
                if add_note is not None:
                    add_note(f"agentbox: restoring the intent before {name!r} failed: {e}")
            raise
        self._restore_intent(previous)

    def _restore_intent(self, previous: Optional[Tuple[str, Optional[str], Any]]) -> None:
        if self._closed or not self._conn.alive:
            return  # the sandbox, and its intent, are gone
        if previous is not None and not _expired(previous[2]):
            self.set_intent(previous[0], previous[1])
        else:
            self.set_intent(None)

    def request_access(self, host: str, reason: Optional[str] = None,
                       timeout: float = 30) -> "AccessDecision":
        """Asks for network access to ``host`` (a name such as
        ``"api.github.com"``), giving ``reason`` for whoever decides. Returns
        ``"allowed"`` (a rule or the active intent covers it, or an operator
        approved), ``"denied"`` (the policy or an operator refused) or
        ``"pending"`` (nobody decided within ``timeout`` seconds, 0 to
        3600; the request stays with the operator, and once approved the host
        is allowed: call again, or just retry the request later).

        The value is a str with more attributes: ``id`` (the request's id,
        as ``agentbox egress pending`` shows it to the operator), ``rule``
        (the rule that allows it), ``reason`` (why, or the operator's note),
        and ``result`` (the daemon's whole answer). The call blocks for up to
        ``timeout`` seconds while an operator decides."""
        _check_str("host", host)
        if reason is not None:
            _check_str("reason", reason, empty=True)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise InvalidArgumentType(f"timeout must be a number of seconds, got "
                                      f"{type(timeout).__name__} {timeout!r}")
        _check_number("timeout", timeout, integer=False, minimum=0,
                      maximum=ACCESS_TIMEOUT_MAX_S)
        params: Dict[str, Any] = {"host": host, "timeout": timeout}
        if reason is not None:
            params["reason"] = reason
        # The daemon holds the answer for up to timeout seconds: wait longer.
        r = self._call("egress.request_access", params, timeout=timeout + ACCESS_GRACE_S)
        decision = r.get("decision") if isinstance(r, dict) else None
        if decision not in ("allowed", "denied", "pending"):
            raise DaemonError(f"egress.request_access: the daemon sent a malformed result: "
                              f"{r!r:.200}")
        return AccessDecision(decision, r)

    def egress_status(self) -> Dict[str, Any]:
        """Returns the daemon's ``egress.status`` for this sandbox: the
        sidecar's state, the policy file and its intents, and ``policy``,
        the sandbox's effective policy: ``deny`` and ``allow`` rules (its
        own, the policy file's, approved requests), ``intent``,
        ``intent_rules`` and ``intent_expires_ms``. Use it to see why a
        request was refused before asking for more."""
        r = self._call("egress.status", {})
        if not isinstance(r, dict):
            raise DaemonError(f"egress.status: the daemon sent a malformed result: {r!r:.200}")
        return r

    def audit(self) -> List[Dict[str, Any]]:
        """Returns this sandbox's events from the daemon's tamper-evident audit
        log, oldest first: dicts with seq, ts (UTC ns), kind, session, step,
        actor, body, prev and hash (docs/audit.md). Raises AuditError if the
        daemon runs without a log."""
        r = self._call("sandbox.audit", {})
        events = r.get("events") if isinstance(r, dict) else None
        if not isinstance(events, list):
            raise DaemonError("sandbox.audit: malformed answer from the daemon")
        return events

    def history(self) -> Dict[str, Any]:
        """The session's steps: a dict with ``head`` (the step whose end is the
        current state; 0 for the start), ``current`` (the snapshot of the
        current state) and ``steps``, each a dict with ``step``, ``parent``
        (the step whose end it started from), ``code``, ``status``,
        ``started_at`` (Unix seconds), ``duration_ms``, ``snapshot`` (``memory``:
        parked, pending, evicted, lost, refused or none; ``why``;
        ``memory_bytes``, what only that copy holds) and ``rewindable``."""
        r = self._call("sandbox.history", {})
        if not isinstance(r, dict) or not isinstance(r.get("steps"), list):
            raise DaemonError(f"sandbox.history: malformed answer from the daemon: {r!r:.200}")
        return r

    def rewind(self, step: int) -> Dict[str, Any]:
        """Makes the session's state exactly the state in which ``step`` started:
        variables, imported modules, objects, the working directory and the
        random state. The steps after it stay in :meth:`history` as a branch;
        the next run starts a new one. Works on a session whose interpreter
        died (a timeout, the OOM killer) as long as the snapshot lives. Returns
        what was restored and ``not_restored`` (processes, threads, sockets).
        Raises InvalidArgument if that state has no snapshot (the history
        says why)."""
        _check_number("step", step, integer=True, minimum=1)
        return self._call("sandbox.rewind", {"step": step})

    def inspect(self, step: int, expr: str) -> Dict[str, Any]:
        """Evaluates ``expr`` in a throwaway copy of the state ``step`` started
        in. Returns a dict: ``value`` (its repr, cut at 64 KiB: ``truncated``),
        ``type``, and ``error`` ({name, value} when the expression raised, else
        None; ``value`` is then None). The session is not touched: the copy's
        memory is discarded. Its effects outside memory (files it writes,
        processes it starts) are not: use side-effect-free expressions."""
        _check_number("step", step, integer=True, minimum=1)
        _check_str("expr", expr)
        return self._call("sandbox.inspect", {"step": step, "expr": expr})

    def fork(self, step: int) -> "Sandbox":
        """A new, independent session of the same tier, limits and network
        rules that starts in the state ``step`` started in. The state is made
        again in the new sandbox (docs/time-travel.md, "Replay"): the
        workspace as the history began, then the code of the steps that led
        there, run once more. ``forked.replay`` says how many steps ran and
        where the result ``diverged`` from the record (a step that ended
        differently, files that differ): code that reads the clock, draws
        from os.urandom or the network may not come out the same."""
        _check_number("step", step, integer=True, minimum=1)
        r = self._call("sandbox.fork", {"step": step})
        if not isinstance(r, dict) or not isinstance(r.get("sandbox"), str):
            raise DaemonError(f"sandbox.fork: malformed answer from the daemon: {r!r:.200}")
        return Sandbox._adopt(self._conn, r)

    @classmethod
    def _adopt(cls, conn: Any, r: Dict[str, Any]) -> "Sandbox":
        """A Sandbox object for a session the daemon made on this connection."""
        box = cls.__new__(cls)
        box._closed = True
        box._conn = conn
        box.id = r["sandbox"]
        box.tier = r.get("tier")
        box.route_reason = r.get("route_reason")
        box.degraded = list(r.get("degraded") or [])
        box.limits = dict(r.get("limits") or {})
        box.network = r.get("network", "none")
        box.dlp = r.get("dlp")
        box.files = Files(box)
        box.forked_from = r.get("forked_from")
        box.replay = r.get("replay")
        box._intent = None
        box._closed = False
        box._warned_degraded = bool(box.degraded)
        return box

    def files_at(self, step: int) -> "Files":
        """The workspace as it was when ``step`` started, read-only:
        ``box.files_at(3).read("data.csv")``, ``.list()``."""
        _check_number("step", step, integer=True, minimum=1)
        return Files(self, step)

    def diff(self, a: int, b: int) -> Dict[str, Any]:
        """The variables added, removed and changed (by the digest of their whole
        repr) between the states steps ``a`` and ``b`` started in, and the
        workspace's files: a dict with ``variables`` = {``added``, ``removed``,
        ``changed``} and ``files`` = {``added``, ``removed``, ``changed``}
        (paths)."""
        _check_number("a", a, integer=True, minimum=1)
        _check_number("b", b, integer=True, minimum=1)
        return self._call("sandbox.diff", {"a": a, "b": b})

    def close(self) -> None:
        """Kills everything in the sandbox and removes its workspace. Idempotent;
        a sandbox that is already dead or whose daemon is gone closes quietly."""
        if self._closed:
            return
        self._closed = True
        if not self._conn.alive:
            return
        try:
            self._conn.call("sandbox.close", {"sandbox": self.id})
        except (SandboxDeadError, DaemonError):
            pass

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # May run in any thread (even the reader thread) or at interpreter
        # exit: never wait for a response here, never raise.
        try:
            if not self._closed:
                self._closed = True
                self._conn.notify("sandbox.close", {"sandbox": self.id})
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Sandbox {getattr(self, 'id', '?')} tier={getattr(self, 'tier', None)!r} {state}>"


class AccessDecision(str):
    """The answer of :meth:`Sandbox.request_access`: equal to ``"allowed"``,
    ``"denied"`` or ``"pending"``, with ``id``, ``host``, ``rule``,
    ``reason`` and ``result`` (the daemon's whole answer, a dict)."""

    id: Any
    host: Optional[str]
    rule: Optional[str]
    reason: Optional[str]
    result: Dict[str, Any]

    def __new__(cls, decision: str, result: Dict[str, Any]) -> "AccessDecision":
        self = super().__new__(cls, decision)
        self.result = dict(result)
        self.id = result.get("id")
        self.host = result.get("host")
        self.rule = result.get("rule")
        self.reason = result.get("reason")
        return self


def _check_str(name: str, value: Any, empty: bool = False) -> None:
    if not isinstance(value, str):
        raise InvalidArgumentType(f"{name} must be a str, got {type(value).__name__} "
                                  f"{value!r:.80}")
    if not value and not empty:
        raise InvalidArgument(f"{name} must not be empty")


def _check_network(network: Any) -> Union[str, List[Rule]]:
    """Checks Sandbox(network=...) as far as the client can: "none" or a list
    of host patterns and rule dicts. What a rule may hold is the daemon's to
    check: it names the rule and the key it refuses."""
    if isinstance(network, str):
        if network != "none":
            raise InvalidArgument(
                f"network must be \"none\" or a list of rules, got {network!r:.80}; for one "
                f"host write network=[{network!r:.80}]")
        return network
    if not isinstance(network, (list, tuple)):
        raise InvalidArgumentType(f"network must be \"none\" or a list of rules (host "
                                  f"patterns or dicts), got {type(network).__name__}")
    for i, rule in enumerate(network):
        if not isinstance(rule, (str, dict)):
            raise InvalidArgumentType(f"network[{i}] must be a host pattern (str) or a rule "
                                      f"(dict), got {type(rule).__name__} {rule!r:.80}")
    return list(network)


def _expired(expires_at: Any) -> bool:
    """Whether a time the daemon sent (seconds, milliseconds or nanoseconds
    since 1970 told apart by size, or ISO-8601) has passed; False if unknown."""
    when: Optional[float] = None
    if isinstance(expires_at, (int, float)) and not isinstance(expires_at, bool):
        x = float(expires_at)
        when = x / 1e9 if x >= 1e17 else x / 1e6 if x >= 1e14 else x / 1e3 if x >= 1e11 else x
    elif isinstance(expires_at, str):
        try:
            dt = datetime.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        except ValueError:
            return False
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        when = dt.timestamp()
    return when is not None and when <= time.time()


def _session_params(tier: Any, timeout: Any, memory_mb: Any, pids: Any, cpu: Any,
                    disk_mb: Any, url: Any) -> Dict[str, Any]:
    """Checks the arguments shared by Sandbox() and run(); returns the
    sandbox.create parameters."""
    if not isinstance(tier, str) or tier not in TIERS:
        raise InvalidArgument(f"tier must be one of {', '.join(TIERS)}; got {tier!r}")
    limits: Dict[str, Any] = {}
    if timeout is not None:
        _check_timeout("timeout", timeout)
        limits["timeout"] = timeout
    for name, value in (("memory_mb", memory_mb), ("pids", pids), ("disk_mb", disk_mb)):
        if value is not None:
            _check_type(name, value, integer=True)
            limits[name] = value
    if cpu is not None:
        _check_type("cpu", cpu, integer=False)
        limits["cpu"] = cpu
    if url is not None:
        _transport.socket_path(url)  # validates
    params: Dict[str, Any] = {"tier": tier}
    if limits:
        params["limits"] = limits
    return params


def _b64(data: Union[bytes, memoryview]) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_callbacks(on_stdout: Any, on_stderr: Any, on_rerun: Any = None) -> None:
    for name, cb in (("on_stdout", on_stdout), ("on_stderr", on_stderr),
                     ("on_rerun", on_rerun)):
        if cb is not None and not callable(cb):
            raise InvalidArgument(f"{name} must be callable, got {type(cb).__name__}")


def _output_router(on_stdout: Optional[OutputCallback], on_stderr: Optional[OutputCallback],
                   on_rerun: Optional[RerunCallback]) -> Callable[[str, Dict[str, Any]], None]:
    """The handler of sandbox.output and sandbox.rerun notifications for one run."""
    callbacks = {"stdout": on_stdout, "stderr": on_stderr}

    def on_notify(method: str, p: Dict[str, Any]) -> None:
        if method == "sandbox.rerun":
            reason = p.get("reason")
            if on_rerun is not None:
                on_rerun(reason if isinstance(reason, str) else "")
            return
        cb = callbacks.get(p.get("stream"))  # type: ignore[arg-type]
        data = p.get("data")
        if cb is not None and isinstance(data, str):
            cb(data)
    return on_notify


def _interrupted_execution(e: KeyboardInterrupt) -> Optional[Execution]:
    """Sets e.execution to the result of the run that e interrupted (None if
    the SDK stopped waiting before it came) and returns it."""
    r = getattr(e, "agentbox_result", None)
    ex = None
    if isinstance(r, dict):
        try:
            ex = Execution.from_result(r)
        except DaemonError:
            ex = None
    e.execution = ex  # type: ignore[attr-defined]
    return ex


def _wait_for(timeout: Any) -> float:
    """How long to wait for a run's result: its timeout (the daemon enforces
    it) plus a grace period for a daemon that stopped answering."""
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        timeout = 30.0
    return float(timeout) + _transport.RUN_GRACE_S


def run(code: str, tier: str = "auto", timeout: Optional[float] = None,
        memory_mb: Optional[int] = None, pids: Optional[int] = None,
        cpu: Optional[float] = None, disk_mb: Optional[int] = None,
        url: Optional[str] = None, on_stdout: Optional[OutputCallback] = None,
        on_stderr: Optional[OutputCallback] = None,
        on_rerun: Optional[RerunCallback] = None,
        degrade: Optional[List[str]] = None, daemon: Optional[str] = None) -> Execution:
    """Runs code once in a fresh sandbox that is thrown away afterwards
    (stateless: nothing of this run is visible to the next). With tier
    ``"auto"`` the router picks nano or heavy, and a nano run that fails for
    lack of the heavy tier is run again there (``promoted``). Arguments as
    for :class:`Sandbox` and :meth:`Sandbox.run` (Ctrl-C included)::

        from agentbox import run
        print(run("print(6 * 7)").stdout)
    """
    if not isinstance(code, str):
        raise InvalidArgument(f"code must be a str, got {type(code).__name__}")
    _check_callbacks(on_stdout, on_stderr, on_rerun)
    params = _session_params(tier, timeout, memory_mb, pids, cpu, disk_mb, url)
    layers = _transport.check_degrade(degrade)
    params["code"] = code
    conn = _transport.connection(url, daemon=daemon, degrade=layers)
    try:
        r = conn.call("run", params, on_notify=_output_router(on_stdout, on_stderr, on_rerun),
                      timeout=_wait_for(timeout), interruptible=True)
    except KeyboardInterrupt as e:
        _interrupted_execution(e)
        raise
    ex = Execution.from_result(r)
    if ex.degraded:
        _warn_degraded(str(r.get("sandbox") or "(one-shot)"), ex.degraded)
    return ex


def daemon_info(url: Optional[str] = None, degrade: Optional[List[str]] = None,
                daemon: Optional[str] = None) -> Dict[str, Any]:
    """Returns the daemon's ``daemon.info`` result: version, jail layers
    (present / degraded / missing), tiers, configured pool sizes, and the
    number of sessions this process holds on that daemon (nothing about
    other clients)."""
    conn = _transport.connection(url, daemon=daemon,
                                 degrade=_transport.check_degrade(degrade))
    r = conn.call("daemon.info", {})
    if not isinstance(r, dict):
        raise DaemonError(f"daemon.info: the daemon sent a malformed result: {r!r:.200}")
    return r


__all__ = ["Sandbox", "Execution", "ExecutionError", "Files", "AccessDecision", "run",
           "daemon_info", "SandboxError"]
