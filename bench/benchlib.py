"""Shared pieces of the benchmarks: a daemon we start and stop ourselves, and
a minimal JSON-RPC client for it."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


class SocketDaemon:
    """An agentboxd --socket we start ourselves and stop by pid."""

    def __init__(self, build, home, pool, *extra):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.sock = str(self.home / "d.sock")
        self.logpath = self.home / "daemon.log"
        self.log = open(self.logpath, "wb")
        self.proc = subprocess.Popen(
            [str(Path(build) / "agentboxd"), "--socket", self.sock, "--home", str(self.home),
             "--pool", str(pool), *extra,
             *(() if "--nano-pool" in extra else ("--nano-pool", "-1"))], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.log, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agentboxd exited with {self.proc.returncode}: "
                                   f"{self.read_log()[-2000:]}")
            if os.path.exists(self.sock):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(self.sock)
                    break
                except OSError:
                    pass
                finally:
                    s.close()
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("agentboxd did not open its socket within 30 s")
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def read_log(self):
        try:
            return self.logpath.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print(f"warning: agentboxd {self.proc.pid} ignored SIGTERM for 30 s; "
                      f"sending SIGKILL", file=sys.stderr)
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.log.close()


class Client:
    """A minimal blocking JSON-RPC client (one connection, one call at a time)."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")
        self.n = 0

    def call(self, method, **params):
        self.n += 1
        self.f.write(json.dumps({"jsonrpc": "2.0", "id": self.n, "method": method,
                                 "params": params}).encode() + b"\n")
        self.f.flush()
        while True:
            msg = json.loads(self.f.readline())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]

    def close(self):
        self.s.close()
