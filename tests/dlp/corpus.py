#!/usr/bin/python3
"""A labelled corpus for the DLP engine (issue 11), made here from a fixed
seed: secrets and personal data of our own making embedded in realistic
context, the same hidden by the evasions the engine must see through, and
negatives that look like them but are not.

Every value is fake. Formats and checksums are valid (GitHub and npm CRC32,
Luhn, IBAN mod 97, the My Number check digit, ABA, bech32 for age keys) so
that a detector which checks them has something real to check, but no value
was ever issued to anyone.

Each record is {"id", "category", "kind", "evasion", "text"}:
  category  "secret" | "pii" | "evasion" | "negative"
  kind      the kind the engine should report (null for a negative)
  evasion   the evasion's name (null outside the evasion category)

    /usr/bin/python3 tests/dlp/corpus.py [--out FILE] [--seed N]

writes the corpus as JSON lines (standard output without --out). Tests and
benchmarks import it: generate() returns the records, write_jsonl() writes
them."""
import argparse
import base64
import binascii
import gzip
import json
import random
import string
import sys
import urllib.parse
import uuid
import zlib

SEED = 20261202
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = string.ascii_letters + string.digits + "+/"
B64URL = string.ascii_letters + string.digits + "-_"

SECRET_KINDS = [
    "aws_access_key_id", "aws_secret_access_key", "github_token", "gitlab_token", "slack_token",
    "slack_webhook", "stripe_key", "openai_api_key", "anthropic_api_key", "google_api_key",
    "gcp_service_account", "azure_storage_key", "jwt", "private_key", "npm_token", "pypi_token",
    "huggingface_token", "sendgrid_api_key", "twilio", "discord_bot_token", "database_url",
    "url_basic_auth", "generic_api_key", "http_basic_auth", "password_assignment",
    "shopify_token", "mailgun_api_key", "telegram_bot_token", "digitalocean_token",
    "databricks_token", "hashicorp_vault_token", "age_secret_key", "square_token",
    "azure_ad_client_secret",
]
PII_KINDS = [
    "credit_card", "iban", "us_ssn", "email", "phone_number", "jp_my_number", "jp_postal_code",
    "jp_address", "jp_residence_card", "jp_drivers_license", "passport_number", "bank_account",
    "date_of_birth", "person_name", "jp_health_insurance", "jp_pension_number",
    "us_bank_routing", "uk_national_insurance",
]
EVASIONS = [
    "fullwidth", "zero_width", "html_entities", "json_escape", "base64", "base64url", "base32",
    "hex", "hex_spaced", "hex_escaped", "percent", "percent_twice", "gzip_base64", "multipart",
    "multipart_base64", "form_urlencoded", "basic_auth_header", "url_password",
]
PER_SECRET = 20       # records per secret kind
PER_PII = 20          # records per PII kind
PER_EVASION = 40      # records per evasion


# ------------------------------------------------------------------ checksums

def b62(n, width=6):
    s = ""
    while n:
        s = B62[n % 62] + s
        n //= 62
    return s.rjust(width, "0")


def crc_token(prefix, body):
    """GitHub classic and npm tokens: prefix + 30 base62 + base62(CRC32 of
    the 30), six digits (see notes/checksums.md)."""
    return prefix + body + b62(zlib.crc32(body.encode()))


def luhn_digit(partial):
    s = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        s += d
    return str((10 - s % 10) % 10)


def luhn_ok(num):
    return luhn_digit(num[:-1]) == num[-1]


def my_number_digit(first11):
    """The My Number check digit: P1 is the rightmost of the 11 digits,
    Q_n = n + 1 for n <= 6 and n - 5 for n >= 7."""
    s = 0
    for n, ch in enumerate(reversed(first11), 1):
        s += int(ch) * (n + 1 if n <= 6 else n - 5)
    r = s % 11
    return str(0 if r <= 1 else 11 - r)


def iban_check(country, bban):
    rearranged = bban + country + "00"
    num = "".join(str(int(c, 36)) for c in rearranged)
    return "%02d" % (98 - int(num) % 97)


def aba_ok(d):
    w = [3, 7, 1] * 3
    return sum(int(c) * k for c, k in zip(d, w)) % 10 == 0


BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def bech32_polymod(values):
    gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3]
    chk = 1
    for v in values:
        b = chk >> 25
        chk = (chk & 0x1ffffff) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if ((b >> i) & 1) else 0
    return chk


def bech32_encode(hrp, data8):
    acc, bits, data = 0, 0, []
    for b in data8:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    hv = [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]
    pm = bech32_polymod(hv + data + [0] * 6) ^ 1
    chk = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32[d] for d in data + chk)


# ----------------------------------------------------------------- generators

class Gen:
    """All the fake values, from one seeded random source."""

    def __init__(self, seed):
        self.r = random.Random(seed)

    def s(self, alphabet, n):
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def pick(self, xs):
        return self.r.choice(xs)

    def digits(self, n):
        return self.s(string.digits, n)

    def b64(self, nbytes):
        return base64.b64encode(self.r.randbytes(nbytes)).decode()

    # ---- secrets
    def aws_access_key_id(self):
        return self.pick(["AKIA", "ASIA", "AKIA", "AKIA"]) + self.s("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)

    def aws_secret_access_key(self):
        return self.s(ALNUM + "/+", 40)

    def github_token(self):
        if self.r.random() < 0.15:
            return "github_pat_" + self.s(B62, 22) + "_" + self.s(B62, 59)
        return crc_token(self.pick(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]), self.s(B62, 30))

    def gitlab_token(self):
        return self.pick(["glpat-", "glpat-", "gldt-", "glrt-"]) + self.s(ALNUM + "_-", 20)

    def slack_token(self):
        p = self.pick(["xoxb", "xoxp", "xoxa", "xoxr"])
        if p == "xoxb":
            return f"xoxb-{self.digits(12)}-{self.digits(13)}-{self.s(ALNUM, 24)}"
        return f"{p}-{self.digits(12)}-{self.digits(13)}-{self.digits(13)}-{self.s(HEX, 32)}"

    def slack_webhook(self):
        u = string.ascii_uppercase + string.digits
        return (f"https://hooks.slack.com/services/T{self.s(u, 8)}/B{self.s(u, 10)}/"
                f"{self.s(ALNUM, 24)}")

    def stripe_key(self):
        return self.pick(["sk_live_", "rk_live_", "sk_live_"]) + self.s(ALNUM, self.pick([24, 34, 99]))

    def openai_api_key(self):
        if self.r.random() < 0.5:
            return "sk-" + self.s(ALNUM, 20) + "T3BlbkFJ" + self.s(ALNUM, 20)
        return ("sk-proj-" + self.s(ALNUM + "_-", 74) + "T3BlbkFJ" + self.s(ALNUM + "_-", 74))

    def anthropic_api_key(self):
        return "sk-ant-" + self.pick(["api03", "admin01"]) + "-" + self.s(ALNUM + "_-", 93) + "AA"

    def google_api_key(self):
        return "AIza" + self.s(ALNUM + "_-", 35)

    def private_key_pem(self, which=None):
        which = which or self.pick(["rsa", "pkcs8", "ec", "openssh"])
        if which == "rsa":
            der = b"\x30\x82\x04\xa4\x02\x01\x00\x02\x82\x01\x01\x00" + self.r.randbytes(1180)
            label = "RSA PRIVATE KEY"
        elif which == "pkcs8":
            der = (b"\x30\x82\x04\xbd\x02\x01\x00\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01"
                   b"\x01\x05\x00\x04\x82\x04\xa7" + self.r.randbytes(1180))
            label = "PRIVATE KEY"
        elif which == "ec":
            der = b"\x30\x77\x02\x01\x01\x04\x20" + self.r.randbytes(112)
            label = "EC PRIVATE KEY"
        else:
            der = b"openssh-key-v1\x00\x00\x00\x00\x04none" + self.r.randbytes(380)
            label = "OPENSSH PRIVATE KEY"
        b = base64.b64encode(der).decode()
        lines = [b[i:i + 64] for i in range(0, len(b), 64)]
        return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"

    def private_key(self):
        return self.private_key_pem()

    def gcp_service_account(self):
        proj = self.pick(["acme-data", "shop-prod", "ml-pipeline", "tokyo-analytics"]) + "-" + self.digits(6)
        sa = self.pick(["deployer", "etl-runner", "backup", "ci-bot"])
        return json.dumps({
            "type": "service_account", "project_id": proj,
            "private_key_id": self.s(HEX, 40),
            "private_key": self.private_key_pem("pkcs8"),
            "client_email": f"{sa}@{proj}.iam.gserviceaccount.com",
            "client_id": self.digits(21),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
        }, indent=2)

    def azure_storage_key(self):
        acct = self.pick(["acmestore", "logsarchive", "tokyodata", "mlartifacts"]) + self.digits(3)
        key = self.b64(64)
        return f"DefaultEndpointsProtocol=https;AccountName={acct};AccountKey={key};EndpointSuffix=core.windows.net"

    def jwt(self):
        def enc(o):
            return base64.urlsafe_b64encode(json.dumps(o, separators=(",", ":")).encode()).decode().rstrip("=")
        h = {"alg": self.pick(["HS256", "RS256", "ES256"]), "typ": "JWT"}
        p = {"sub": self.digits(10), "name": self.pick(["svc-batch", "user-4821", "admin-api"]),
             "iat": 1700000000 + self.r.randrange(10**7), "exp": 1800000000 + self.r.randrange(10**7)}
        sig = base64.urlsafe_b64encode(self.r.randbytes(32 if h["alg"] == "HS256" else 64)).decode().rstrip("=")
        return enc(h) + "." + enc(p) + "." + sig

    def npm_token(self):
        return crc_token("npm_", self.s(B62, 30))

    def pypi_token(self):
        return "pypi-AgEIcHlwaS5vcmc" + self.s(B64URL, self.pick([70, 140, 160]))

    def huggingface_token(self):
        return "hf_" + self.s(string.ascii_letters, 34)

    def sendgrid_api_key(self):
        return "SG." + self.s(ALNUM + "_-", 22) + "." + self.s(ALNUM + "_-", 43)

    def twilio(self):
        """An API key SID (the secret's name; the account SID, AC..., is
        not a secret by itself)."""
        return "SK" + self.s(HEX, 32)

    def discord_bot_token(self):
        uid = str(self.r.randrange(10**17, 10**19))
        first = base64.b64encode(uid.encode()).decode().rstrip("=")
        return first + "." + self.s(ALNUM + "_-", 6) + "." + self.s(ALNUM + "_-", 38)

    def password(self):
        words = ["Sakura", "Tokyo", "Harbor", "Maple", "Falcon", "Quartz", "Nimbus", "Kitsune"]
        return (self.pick(words) + self.pick(["#", "!", "$", "%", "&", "*"]) + self.digits(4)
                + self.s(ALNUM, 4) + self.pick(["!", "?", "@", "^"]))

    def url_password(self):
        """A password that needs no percent-encoding in a URL."""
        return self.pick(["Sakura", "Tokyo", "Harbor", "Maple", "Falcon"]) + self.s(ALNUM, 10) + self.digits(2)

    def database_url(self):
        user = self.pick(["app", "svc_orders", "reporting", "admin", "etl"])
        pw = self.url_password()
        host = self.pick(["db.internal.acme-corp.net", "10.20.3.14", "orders-db.prod.svc",
                          "pg-main.shop-prod.local", "cluster0.ab12c.mongodb.net"])
        scheme = self.pick(["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp", "mssql"])
        if scheme == "redis":
            return f"redis://:{pw}@{host}:6379/0"
        port = {"postgres": 5432, "postgresql": 5432, "mysql": 3306, "mongodb+srv": None, "amqp": 5672, "mssql": 1433}[scheme]
        hp = host if port is None else f"{host}:{port}"
        return f"{scheme}://{user}:{pw}@{hp}/{self.pick(['orders', 'app', 'analytics', 'main'])}"

    def url_basic_auth(self):
        user = self.pick(["deploy", "ci", "jenkins", "admin", "mirror"])
        host = self.pick(["artifacts.acme-corp.net", "git.internal.example-co.jp", "registry.shop-prod.io",
                          "ftp.tokyo-data.jp", "nexus.build.local"])
        scheme = self.pick(["https", "https", "http", "ftp"])
        return f"{scheme}://{user}:{self.url_password()}@{host}/{self.pick(['repo/simple/', 'releases/', 'pub/', 'api/v2/'])}"

    def generic_api_key(self):
        return self.s(ALNUM, self.pick([32, 40, 48]))

    def http_basic_auth(self):
        user = self.pick(["admin", "svc-report", "taro.yamada", "deploy", "api"])
        return "Basic " + base64.b64encode(f"{user}:{self.password()}".encode()).decode()

    def shopify_token(self):
        return self.pick(["shpat_", "shpss_", "shpca_", "shppa_"]) + self.s(HEX, 32)

    def mailgun_api_key(self):
        return "key-" + self.s(HEX, 32)

    def telegram_bot_token(self):
        return str(self.r.randrange(10**8, 10**10)) + ":AA" + self.s(ALNUM + "_-", 33)

    def digitalocean_token(self):
        return self.pick(["dop_v1_", "doo_v1_", "dor_v1_"]) + self.s(HEX, 64)

    def databricks_token(self):
        return "dapi" + self.s(HEX, 32) + self.pick(["", "-2", ""])

    def hashicorp_vault_token(self):
        return self.pick(["hvs.", "hvs.", "hvb."]) + "CAESI" + self.s(ALNUM + "_-", 90)

    def age_secret_key(self):
        return bech32_encode("age-secret-key-", self.r.randbytes(32)).upper()

    def square_token(self):
        p = self.pick(["sq0atp-", "sq0csp-", "EAAA"])
        return p + self.s(ALNUM + "_-", {"sq0atp-": 22, "sq0csp-": 43, "EAAA": 60}[p])

    def azure_ad_client_secret(self):
        return self.s(ALNUM + "_~.", 3) + self.digits(1) + "Q~" + self.s(ALNUM + "_~.-", 34)

    # ---- personal data
    def credit_card(self):
        brand = self.pick(["visa", "mc", "mc2", "amex", "jcb", "discover"])
        if brand == "visa":
            p, n = "4" + self.digits(5), 16
        elif brand == "mc":
            p, n = str(self.r.randint(51, 55)) + self.digits(4), 16
        elif brand == "mc2":
            p, n = str(self.r.randint(2221, 2720)) + self.digits(2), 16
        elif brand == "amex":
            p, n = self.pick(["34", "37"]) + self.digits(4), 15
        elif brand == "jcb":
            p, n = str(self.r.randint(3528, 3589)) + self.digits(2), 16
        else:
            p, n = "6011" + self.digits(2), 16
        body = p + self.digits(n - 1 - len(p))
        num = body + luhn_digit(body)
        style = self.pick(["plain", "dash", "space"])
        if style == "plain":
            return num
        sep = "-" if style == "dash" else " "
        if n == 15:
            return sep.join([num[:4], num[4:10], num[10:]])
        return sep.join(num[i:i + 4] for i in range(0, 16, 4))

    def luhn_invalid_16(self):
        while True:
            num = "4" + self.digits(15)
            if not luhn_ok(num):
                return num

    def iban(self):
        c = self.pick(["DE", "GB", "FR", "NL", "ES", "IT"])
        if c == "DE":
            bban = self.digits(18)
        elif c == "GB":
            bban = self.pick(["NWBK", "BARC", "HBUK", "LOYD"]) + self.digits(14)
        elif c == "FR":
            bban = self.digits(10) + self.s(string.ascii_uppercase + string.digits, 11) + self.digits(2)
        elif c == "NL":
            bban = self.pick(["ABNA", "INGB", "RABO"]) + self.digits(10)
        elif c == "ES":
            bban = self.digits(20)
        else:
            bban = self.pick(string.ascii_uppercase) + self.digits(10) + self.digits(12)
        iban = c + iban_check(c, bban) + bban
        if self.r.random() < 0.5:
            return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        return iban

    def us_ssn(self):
        while True:
            a = self.r.randint(1, 899)
            if a != 666:
                break
        return f"{a:03d}-{self.r.randint(1, 99):02d}-{self.r.randint(1, 9999):04d}"

    def email(self):
        local = self.pick(["taro.yamada", "hanako_suzuki", "j.smith", "m.tanaka", "support+billing",
                           "k-sato", "emily.jones", "yuki.kobayashi", "dev.ops", "a.nakamura"])
        local += self.pick(["", str(self.r.randint(1, 99))])
        dom = self.pick(["acme-corp.com", "tanaka-shoji.co.jp", "mail.shop-prod.io", "univ-tokyo-lab.ac.jp",
                         "kobe-trading.jp", "northwind-traders.net", "fastmail.example-isp.ne.jp"])
        return f"{local}@{dom}"

    def phone_number(self):
        style = self.pick(["jp_mobile", "jp_mobile_intl", "jp_land", "jp_land_intl", "jp_free", "us", "us_intl"])
        if style == "jp_mobile":
            return f"{self.pick(['090', '080', '070'])}-{self.digits(4)}-{self.digits(4)}"
        if style == "jp_mobile_intl":
            return f"+81-{self.pick(['90', '80', '70'])}-{self.digits(4)}-{self.digits(4)}"
        if style == "jp_land":
            return f"{self.pick(['03', '06'])}-{self.digits(4)}-{self.digits(4)}"
        if style == "jp_land_intl":
            return f"+81 {self.pick(['3', '6'])} {self.digits(4)} {self.digits(4)}"
        if style == "jp_free":
            return f"0120-{self.digits(3)}-{self.digits(3)}"
        area = self.pick(["212", "415", "617", "206", "312", "503"])
        ex = str(self.r.randint(201, 989))
        if style == "us":
            return f"({area}) {ex}-{self.digits(4)}"
        return f"+1 {area}-{ex}-{self.digits(4)}"

    def my_number(self, valid=True):
        first = str(self.r.randint(1, 9)) + self.digits(10)
        d = my_number_digit(first)
        if not valid:
            d = str((int(d) + self.r.randint(1, 9)) % 10)
        return first + d

    def my_number_fmt(self, valid=True):
        n = self.my_number(valid)
        st = self.pick(["plain", "space", "dash"])
        if st == "plain":
            return n
        sep = " " if st == "space" else "-"
        return sep.join([n[:4], n[4:8], n[8:]])

    def postal(self):
        return f"{self.r.randint(100, 999)}-{self.digits(4)}"

    PREFS = [("東京都", ["千代田区", "港区", "渋谷区", "新宿区", "世田谷区"], ["丸の内", "六本木", "神南", "西新宿", "三軒茶屋"]),
             ("大阪府", ["大阪市北区", "大阪市中央区", "堺市堺区"], ["梅田", "難波", "南瓦町"]),
             ("神奈川県", ["横浜市西区", "川崎市中原区"], ["みなとみらい", "小杉町"]),
             ("愛知県", ["名古屋市中村区", "豊田市"], ["名駅", "元城町"]),
             ("北海道", ["札幌市中央区"], ["北一条西"]),
             ("福岡県", ["福岡市博多区"], ["博多駅前"]),
             ("京都府", ["京都市下京区"], ["烏丸通"])]

    def jp_address(self):
        pref, cities, towns = self.pick(self.PREFS)
        block = self.pick([f"{self.r.randint(1, 9)}-{self.r.randint(1, 30)}-{self.r.randint(1, 20)}",
                           f"{self.r.randint(1, 9)}丁目{self.r.randint(1, 30)}番{self.r.randint(1, 20)}号",
                           f"{self.r.randint(1, 9)}-{self.r.randint(1, 30)}"])
        return pref + self.pick(cities) + self.pick(towns) + block

    def residence_card(self):
        u = string.ascii_uppercase
        return self.s(u, 2) + self.digits(8) + self.s(u, 2)

    def drivers_license(self):
        return self.pick(["30", "45", "62", "11", "53"]) + self.digits(10)

    def passport(self):
        return self.pick(["TK", "TR", "MZ", "TZ", "RE"]) + self.digits(7)

    BANKS = [("みずほ銀行", "渋谷支店"), ("三菱UFJ銀行", "新宿支店"), ("三井住友銀行", "梅田支店"),
             ("りそな銀行", "池袋支店"), ("ゆうちょ銀行", "〇一八店"), ("横浜銀行", "本店営業部")]

    def bank(self):
        return self.pick(self.BANKS)

    def dob(self):
        y, m, d = self.r.randint(1950, 2005), self.r.randint(1, 12), self.r.randint(1, 28)
        return self.pick([f"{y}年{m}月{d}日", f"{y}-{m:02d}-{d:02d}", f"{y}/{m:02d}/{d:02d}",
                          f"昭和{self.r.randint(30, 63)}年{m}月{d}日", f"{m:02d}/{d:02d}/{y}"])

    JP_NAMES = [("山田", "太郎", "ヤマダ", "タロウ"), ("鈴木", "花子", "スズキ", "ハナコ"),
                ("佐藤", "健一", "サトウ", "ケンイチ"), ("田中", "美咲", "タナカ", "ミサキ"),
                ("高橋", "翔", "タカハシ", "ショウ"), ("中村", "由美", "ナカムラ", "ユミ"),
                ("小林", "大輔", "コバヤシ", "ダイスケ"), ("伊藤", "さくら", "イトウ", "サクラ")]
    EN_NAMES = ["John Smith", "Emily Jones", "Michael Brown", "Sarah Miller", "David Wilson",
                "Olivia Taylor"]

    def routing(self):
        while True:
            d = self.pick(["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12",
                           "21", "22", "26", "31", "32", "61", "63", "71"]) + self.digits(6)
            for last in "0123456789":
                if aba_ok(d + last):
                    return d + last

    def nino(self):
        first = "ABCEGHJKLMNOPRSTWXYZ"
        second = "ABCEGHJKLMNPRSTWXYZ"
        while True:
            p = self.pick(first) + self.pick(second)
            if p not in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
                break
        d = self.digits(6)
        suf = self.pick("ABCD")
        if self.r.random() < 0.5:
            return f"{p} {d[:2]} {d[2:4]} {d[4:]} {suf}"
        return p + d + suf


# -------------------------------------------------------------- secret context

# Variable names per secret kind: a label the value is assigned to. Kinds
# whose detectors need a label (aws_secret_access_key, generic_api_key,
# password_assignment) only ever appear next to one.
VARS = {
    "aws_access_key_id": ["AWS_ACCESS_KEY_ID", "aws_access_key_id", "accessKeyId"],
    "aws_secret_access_key": ["AWS_SECRET_ACCESS_KEY", "aws_secret_access_key", "secretAccessKey"],
    "github_token": ["GITHUB_TOKEN", "GH_TOKEN", "github_token"],
    "gitlab_token": ["GITLAB_TOKEN", "CI_JOB_TOKEN_OVERRIDE", "gitlab_token"],
    "slack_token": ["SLACK_BOT_TOKEN", "slack_token", "SLACK_API_TOKEN"],
    "slack_webhook": ["SLACK_WEBHOOK_URL", "webhook_url", "slackWebhook"],
    "stripe_key": ["STRIPE_SECRET_KEY", "stripe_api_key", "stripeKey"],
    "openai_api_key": ["OPENAI_API_KEY", "openai_api_key", "openaiKey"],
    "anthropic_api_key": ["ANTHROPIC_API_KEY", "anthropic_api_key", "claudeKey"],
    "google_api_key": ["GOOGLE_API_KEY", "maps_api_key", "firebaseApiKey"],
    "azure_storage_key": ["AZURE_STORAGE_CONNECTION_STRING", "storage_connection", "AzureWebJobsStorage"],
    "jwt": ["ACCESS_TOKEN", "id_token", "jwt"],
    "npm_token": ["NPM_TOKEN", "npm_auth_token", "NODE_AUTH_TOKEN"],
    "pypi_token": ["PYPI_TOKEN", "TWINE_PASSWORD", "pypi_api_token"],
    "huggingface_token": ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "hf_token"],
    "sendgrid_api_key": ["SENDGRID_API_KEY", "sendgrid_key", "sendgridApiKey"],
    "twilio": ["TWILIO_API_KEY", "twilio_api_key_sid", "TWILIO_API_SID"],
    "discord_bot_token": ["DISCORD_BOT_TOKEN", "discord_token", "DISCORD_TOKEN"],
    "database_url": ["DATABASE_URL", "db_url", "SQLALCHEMY_DATABASE_URI"],
    "url_basic_auth": ["PIP_INDEX_URL", "mirror_url", "REPO_URL"],
    "generic_api_key": ["API_KEY", "api_key", "apiKey", "X_API_KEY", "client_secret", "app_secret"],
    "password_assignment": ["password", "DB_PASSWORD", "db_password", "passwd", "admin_password", "pwd"],
    "shopify_token": ["SHOPIFY_ACCESS_TOKEN", "shopify_token", "shopifyAdminToken"],
    "mailgun_api_key": ["MAILGUN_API_KEY", "mailgun_key", "mailgunApiKey"],
    "telegram_bot_token": ["TELEGRAM_BOT_TOKEN", "telegram_token", "BOT_TOKEN"],
    "digitalocean_token": ["DIGITALOCEAN_TOKEN", "DO_API_TOKEN", "do_token"],
    "databricks_token": ["DATABRICKS_TOKEN", "databricks_pat", "DATABRICKS_API_TOKEN"],
    "hashicorp_vault_token": ["VAULT_TOKEN", "vault_token", "vaultToken"],
    "age_secret_key": ["AGE_SECRET_KEY", "age_identity", "SOPS_AGE_KEY"],
    "square_token": ["SQUARE_ACCESS_TOKEN", "square_token", "squareAppSecret"],
    "azure_ad_client_secret": ["AZURE_CLIENT_SECRET", "client_secret", "aad_client_secret"],
}

# One-line contexts; {var} is the label, {v} the value.
LINE_CONTEXTS = [
    ("env", "{var}={v}\n"),
    ("env_export", "export {var}=\"{v}\"\n"),
    ("json", "{{\n  \"service\": \"billing\",\n  \"{var}\": \"{v}\",\n  \"region\": \"ap-northeast-1\"\n}}\n"),
    ("yaml", "deploy:\n  stage: production\n  env:\n    {var}: {v}\n    LOG_LEVEL: info\n"),
    ("python", "import os\n\n# TODO move to the vault before release\n{var} = \"{v}\"\nclient = Client(timeout=30)\n"),
    ("js", "const config = {{\n  {var}: '{v}',\n  retries: 3,\n}};\nmodule.exports = config;\n"),
    ("log", "2026-11-30T09:14:{sec:02d}.{ms:03d}Z INFO  worker-{w} starting job id={job} {var}={v} attempt=1\n"),
    ("toml", "[credentials]\n{var} = \"{v}\"\ntimeout_seconds = 30\n"),
    ("ja", "本番環境の設定です。{var} は {v} を使ってください。共有は厳禁です。\n"),
    ("prose", "Hi team, for the staging rollout set {var} to {v} and restart the workers. Thanks!\n"),
    ("dockerfile", "FROM python:3.11-slim\nENV {var}={v}\nRUN pip install -r requirements.txt\n"),
    ("ini", "[default]\nregion = ap-northeast-1\n{var} = {v}\n"),
]
# Contexts without a label, for kinds whose value carries its own prefix.
BARE_CONTEXTS = [
    ("header", "GET /v1/repos HTTP/1.1\r\nHost: api.internal\r\nAuthorization: Bearer {v}\r\nAccept: */*\r\n\r\n"),
    ("curl", "curl -sS -H \"Authorization: token {v}\" https://api.internal/v2/items\n"),
    ("chat", "[10:42] kenji: ここに貼っておきます {v} あとで消します\n"),
    ("markdown", "## Setup\n\nPaste `{v}` into the settings page, then click *Save*.\n"),
]


def secret_record(g, kind, i):
    v = g.password() if kind == "password_assignment" else getattr(g, kind)()
    if kind == "gcp_service_account":
        ctx = i % 5
        if ctx == 0:
            return v + "\n"
        if ctx == 1:
            return "credentials = " + v.replace("\n", "\n") + "\nclient = storage.Client.from_service_account_info(credentials)\n"
        if ctx == 2:
            return "GOOGLE_CREDENTIALS='" + json.dumps(json.loads(v), separators=(",", ":")) + "'\n"
        if ctx == 3:
            return "apiVersion: v1\nkind: Secret\nstringData:\n  key.json: |\n" + "".join(
                "    " + ln + "\n" for ln in v.splitlines())
        return "ログに出力されたサービスアカウント:\n" + v + "\n(至急ローテーションしてください)\n"
    if kind == "private_key":
        ctx = i % 6
        if ctx == 0:
            return v
        if ctx == 1:
            return "ssh:\n  deploy_key: |\n" + "".join("    " + ln + "\n" for ln in v.splitlines())
        if ctx == 2:
            return "KEY = \"\"\"" + v + "\"\"\"\nsigner = load_pem_private_key(KEY.encode(), None)\n"
        if ctx == 3:
            return json.dumps({"name": "tls-cert", "key": v}) + "\n"
        if ctx == 4:
            return "$ cat ~/.ssh/id_deploy\n" + v + "$ \n"
        return "秘密鍵を以下に貼ります。\n" + v + "よろしくお願いします。\n"
    if kind == "http_basic_auth":
        ctx = i % 5
        if ctx == 0:
            return f"GET /admin/ HTTP/1.1\r\nHost: intranet.acme-corp.net\r\nAuthorization: {v}\r\n\r\n"
        if ctx == 1:
            return f"curl -H 'Authorization: {v}' https://jenkins.build.local/job/nightly/\n"
        if ctx == 2:
            return f"2026-11-30 12:00:01 DEBUG request headers: {{'Authorization': '{v}', 'Accept': 'application/json'}}\n"
        if ctx == 3:
            return f"requests.get(url, headers={{\"Authorization\": \"{v}\"}})\n"
        return f"プロキシ設定: Proxy-Authorization: {v}\n"
    var = VARS[kind][i % len(VARS[kind])]
    contexts = list(LINE_CONTEXTS)
    if kind in ("aws_access_key_id", "github_token", "gitlab_token", "slack_token", "stripe_key",
                "openai_api_key", "anthropic_api_key", "google_api_key", "npm_token", "pypi_token",
                "huggingface_token", "sendgrid_api_key", "shopify_token", "digitalocean_token",
                "databricks_token", "hashicorp_vault_token", "jwt", "age_secret_key", "square_token",
                "slack_webhook", "database_url", "url_basic_auth", "telegram_bot_token",
                "discord_bot_token"):
        contexts += BARE_CONTEXTS
    if kind == "password_assignment":
        contexts += [("ja_form", "ログインID: admin\nパスワード: {v}\n"),
                     ("sql", "CREATE USER app WITH PASSWORD '{v}';\n")]
    _, tmpl = contexts[(i * 7 + len(kind)) % len(contexts)]
    return tmpl.format(var=var, v=v, sec=g.r.randint(0, 59), ms=g.r.randint(0, 999),
                       w=g.r.randint(1, 8), job=g.digits(6))


# ----------------------------------------------------------------- PII context

def pii_record(g, kind, i):
    """Text holding one value of kind, with the labels a human would write."""
    c = i % 5
    sur, given, ksur, kgiven = g.pick(g.JP_NAMES)
    if kind == "credit_card":
        v = g.credit_card()
        return [f"カード番号: {v}\n有効期限: 08/29\n",
                f'{{"order": {g.digits(8)}, "payment": {{"card_number": "{v}", "exp": "11/28"}}}}\n',
                f"Please charge my Visa card {v} for the renewal.\n",
                f"2026-11-30 10:00:00 WARN payment gateway rejected card={v} reason=expired\n",
                f"name,card,amount\n{sur} {given},{v},12800\n"][c]
    if kind == "iban":
        v = g.iban()
        return [f"IBAN: {v}\nBIC: DEUTDEFF\n",
                f"Please wire the invoice amount to our account, IBAN {v}, reference INV-{g.digits(5)}.\n",
                f'{{"beneficiary": "Northwind GmbH", "iban": "{v}"}}\n',
                f"振込先 IBAN: {v}（ドイツの口座）\n",
                f"supplier_id,iban\n{g.digits(4)},{v}\n"][c]
    if kind == "us_ssn":
        v = g.us_ssn()
        return [f"SSN: {v}\n",
                f"Employee social security number {v} was entered on the W-4 form.\n",
                f'{{"employee": "{g.pick(g.EN_NAMES)}", "ssn": "{v}"}}\n',
                f"Social Security No.: {v}  DOB: 04/12/1985\n",
                f"name,ssn,state\n{g.pick(g.EN_NAMES)},{v},CA\n"][c]
    if kind == "email":
        v = g.email()
        return [f"メールアドレス: {v}\n",
                f"From: {g.pick(g.EN_NAMES)} <{v}>\nSubject: invoice\n",
                f'{{"user": {{"id": {g.digits(6)}, "email": "{v}"}}}}\n',
                f"Contact me at {v} if the build breaks again.\n",
                f"2026-11-30 08:00:00 INFO password reset sent to {v}\n"][c]
    if kind == "phone_number":
        v = g.phone_number()
        return [f"電話番号: {v}\n",
                f"TEL {v}（平日 9:00-18:00）\n",
                f'{{"name": "{sur} {given}", "phone": "{v}"}}\n',
                f"Call me at {v} tomorrow morning.\n",
                f"携帯: {v} までご連絡ください。\n"][c]
    if kind == "jp_my_number":
        v = g.my_number_fmt()
        return [f"マイナンバー: {v}\n",
                f"個人番号（マイナンバー）: {v}\n氏名: {sur} {given}\n",
                f"扶養控除等申告書\n本人の個人番号 {v}\n",
                f'{{"氏名": "{sur} {given}", "個人番号": "{v}"}}\n',
                f"My Number: {v}\n"][c]
    if kind == "jp_postal_code":
        v = g.postal()
        return [f"〒{v}\n{g.jp_address()}\n",
                f"郵便番号: {v}\n",
                f"送付先 〒{v} 東京都港区芝公園\n",
                f'{{"郵便番号": "{v}", "都道府県": "東京都"}}\n',
                f"郵便番号 {v} の地域へは翌日配達です。\n"][c]
    if kind == "jp_address":
        v = g.jp_address()
        return [f"住所: {v}\n",
                f"〒{g.postal()} {v} {g.pick(['ABCビル5F', 'メゾン青山201', ''])}\n",
                f'{{"address": "{v}"}}\n',
                f"お届け先は{v}です。\n",
                f"氏名,住所\n{sur} {given},{v}\n"][c]
    if kind == "jp_residence_card":
        v = g.residence_card()
        return [f"在留カード番号: {v}\n",
                f"在留カード {v} の有効期限を確認しました。\n",
                f'{{"在留カード番号": "{v}", "国籍": "ベトナム"}}\n',
                f"Residence card (在留カード) number: {v}\n",
                f"外国人雇用状況届出\n在留カード番号 {v}\n在留資格: 技術・人文知識・国際業務\n"][c]
    if kind == "jp_drivers_license":
        v = g.drivers_license()
        return [f"運転免許証番号: {v}\n",
                f"本人確認書類: 運転免許証（番号 {v}）\n",
                f'{{"運転免許証番号": "{v}"}}\n',
                f"運転免許証番号 第{v}号\n",
                f"Driver's license (運転免許証番号): {v}\n"][c]
    if kind == "passport_number":
        v = g.passport()
        return [f"旅券番号: {v}\n",
                f"Passport No.: {v}\nNationality: JAPAN\n",
                f'{{"passport_number": "{v}", "expiry": "2031-05-01"}}\n',
                f"パスポート（旅券番号 {v}）のコピーを添付します。\n",
                f"Please confirm passport number {v} for the booking.\n"][c]
    if kind == "bank_account":
        bank, branch = g.bank()
        v = g.digits(7)
        return [f"振込先: {bank} {branch} 普通 口座番号 {v}\n",
                f"{bank} {branch}\n口座番号: {v}\n口座名義: {ksur} {kgiven}\n",
                f'{{"bank": "{bank}", "branch": "{branch}", "口座番号": "{v}"}}\n',
                f"給与振込口座 {bank}{branch} 当座 {v}\n",
                f"お振込みは{bank} {branch}（普通）口座番号{v}までお願いします。\n"][c]
    if kind == "date_of_birth":
        v = g.dob()
        return [f"生年月日: {v}\n",
                f"氏名: {sur} {given}\n生年月日 {v}\n",
                f"DOB: {v}\n",
                f'{{"name": "{g.pick(g.EN_NAMES)}", "date_of_birth": "{v}"}}\n',
                f"Date of birth: {v}\n"][c]
    if kind == "person_name":
        en = g.pick(g.EN_NAMES)
        return [f"氏名: {sur} {given}\n",
                f"フリガナ: {ksur} {kgiven}\n",
                f"Name: {en}\nTitle: Engineer\n",
                f"お名前: {sur} {given} 様\n",
                f"申込者氏名　{sur}　{given}\n"][c]
    if kind == "jp_health_insurance":
        v = g.digits(8)
        return [f"被保険者番号: {v}\n",
                f"保険者番号 {g.digits(8)} 被保険者証記号 {g.digits(3)} 被保険者番号 {v}\n",
                f'{{"被保険者番号": "{v}"}}\n',
                f"健康保険証の被保険者番号 {v} を記入してください。\n",
                f"介護保険 被保険者番号: {g.digits(10)}\n"][c]
    if kind == "jp_pension_number":
        v = f"{g.digits(4)}-{g.digits(6)}"
        return [f"基礎年金番号: {v}\n",
                f"年金手帳（基礎年金番号 {v}）\n",
                f'{{"基礎年金番号": "{v}"}}\n',
                f"基礎年金番号 {v} の照会をお願いします。\n",
                f"Basic pension number (基礎年金番号): {v}\n"][c]
    if kind == "us_bank_routing":
        v = g.routing()
        acct = g.digits(10)
        return [f"Routing number: {v}\nAccount number: {acct}\n",
                f"ABA routing number {v}, checking account {acct}\n",
                f'{{"routing_number": "{v}", "account_number": "{acct}"}}\n',
                f"Direct deposit: routing no. {v} / acct {acct}\n",
                f"Please update the ACH routing number to {v}.\n"][c]
    if kind == "uk_national_insurance":
        v = g.nino()
        return [f"National Insurance number: {v}\n",
                f"NI number {v} has been added to your payroll record.\n",
                f'{{"nino": "{v}", "employee": "{g.pick(g.EN_NAMES)}"}}\n',
                f"NINO: {v}\n",
                f"Your National Insurance No. is {v}.\n"][c]
    raise ValueError(kind)


# -------------------------------------------------------------------- evasions

# The kinds hidden by the evasions, and how each appears before encoding
# (with the label a label-dependent detector needs).
EVASION_KINDS = ["aws_access_key_id", "github_token", "slack_token", "stripe_key", "openai_api_key",
                 "anthropic_api_key", "google_api_key", "gitlab_token", "npm_token", "sendgrid_api_key",
                 "huggingface_token", "credit_card", "email", "jp_my_number", "us_ssn", "phone_number",
                 "password_assignment", "database_url"]


def inner(g, kind):
    """(snippet, value): the snippet holds the value and any label it needs."""
    if kind == "credit_card":
        v = g.credit_card()
        return f"card number: {v}", v
    if kind == "email":
        v = g.email()
        return f"email: {v}", v
    if kind == "jp_my_number":
        v = g.my_number_fmt()
        return f"マイナンバー: {v}", v
    if kind == "us_ssn":
        v = g.us_ssn()
        return f"SSN: {v}", v
    if kind == "phone_number":
        v = g.phone_number()
        return f"電話番号: {v}", v
    if kind == "password_assignment":
        v = g.password()
        return f"password={v}", v
    v = getattr(g, kind)()
    var = VARS[kind][0]
    return f"{var}={v}", v


FW = {c: chr(ord(c) + 0xFEE0) for c in map(chr, range(0x21, 0x7F))}


def fullwidth(s):
    return "".join(FW.get(c, "\u3000" if c == " " else c) for c in s)


def percent_all(s):
    return "".join("%%%02X" % b for b in s.encode())


def evasion_record(g, ev, i):
    kind = EVASION_KINDS[(i * 5 + EVASIONS.index(ev)) % len(EVASION_KINDS)]
    snip, v = inner(g, kind)
    raw = snip.encode()
    if ev == "fullwidth":
        t = snip.replace(v, fullwidth(v))
        return kind, g.pick([f"設定メモ：{t}\n", f"{t}\n", f"お問い合わせ先　{t}\n", f"# {t}\n"])
    if ev == "zero_width":
        zw = ["\u200b", "\u200d", "\ufeff", "\u200c"]
        cut = sorted(g.r.sample(range(1, len(v)), min(4, len(v) - 1)))
        w, last = "", 0
        for c in cut:
            w += v[last:c] + g.pick(zw)
            last = c
        w += v[last:]
        return kind, g.pick([f"{snip.replace(v, w)}\n", f"Pasted from chat: {snip.replace(v, w)}\n"])
    if ev == "html_entities":
        def ent(c):
            m = g.r.random()
            if m < 0.4:
                return "&#%d;" % ord(c)
            if m < 0.8:
                return "&#x%X;" % ord(c)
            return c
        w = "".join(ent(c) if c.isascii() else c for c in v)
        return kind, g.pick([f"<div class=\"note\">{snip.replace(v, w)}</div>\n",
                             f"<input type=\"hidden\" name=\"cfg\" value=\"{snip.replace(v, w)}\">\n",
                             f"<p>{snip.replace(v, w)}</p>\n"])
    if ev == "json_escape":
        def esc(c):
            if c == "/":
                return "\\/"
            if c.isascii() and g.r.random() < 0.5:
                return "\\u%04x" % ord(c)
            return c
        w = "".join(esc(c) for c in snip)
        return kind, g.pick([f"{{\"note\": \"{w}\"}}\n", f"{{\"event\":\"config\",\"data\":\"{w}\"}}\n"])
    if ev == "base64":
        e = base64.b64encode(raw).decode()
        return kind, g.pick([f"data: {e}\n", f"{{\"blob\": \"{e}\"}}\n", f"echo {e} | base64 -d\n",
                             f"設定をエンコードしました: {e}\n"])
    if ev == "base64url":
        e = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return kind, g.pick([f"https://app.acme-corp.net/callback?state={e}\n", f"state={e}\n",
                             f"{{\"ctx\": \"{e}\"}}\n"])
    if ev == "base32":
        e = base64.b32encode(raw).decode()
        return kind, g.pick([f"payload: {e}\n", f"{{\"b32\": \"{e}\"}}\n", f"code {e}\n"])
    if ev == "hex":
        e = raw.hex()
        return kind, g.pick([f"dump: {e}\n", f"{{\"hex\": \"{e}\"}}\n", f"0x{e}\n"])
    if ev == "hex_spaced":
        sep = g.pick([" ", ":", " "])
        e = sep.join("%02x" % b for b in raw)
        return kind, g.pick([f"bytes: {e}\n", f"00000000  {e}\n"])
    if ev == "hex_escaped":
        if g.r.random() < 0.7:
            e = "".join("\\x%02x" % b for b in raw)
            return kind, g.pick([f"s = b\"{e}\"\n", f"printf '{e}'\n"])
        e = ", ".join("0x%02x" % b for b in raw)
        return kind, f"static const unsigned char k[] = {{{e}}};\n"
    if ev == "percent":
        e = percent_all(snip)
        return kind, g.pick([f"GET /search?q={e} HTTP/1.1\n", f"https://app.acme-corp.net/r?next={e}\n",
                             f"redirect_to={e}\n"])
    if ev == "percent_twice":
        e = percent_all(snip).replace("%", "%25")
        return kind, g.pick([f"GET /track?u={e} HTTP/1.1\n", f"log: url={e}\n"])
    if ev == "gzip_base64":
        e = base64.b64encode(gzip.compress(raw, mtime=0)).decode()
        return kind, g.pick([f"{{\"payload\": \"{e}\", \"encoding\": \"gzip\"}}\n", f"X-Debug-State: {e}\n",
                             f"compressed={e}\n"])
    if ev in ("multipart", "multipart_base64"):
        b = "----WebKitFormBoundary" + g.s(ALNUM, 16)
        name = kind if kind in ("email", "password_assignment") else "config"
        if ev == "multipart":
            part = f"Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{snip}\r\n"
        else:
            enc = base64.b64encode(raw).decode()
            part = (f"Content-Disposition: form-data; name=\"{name}\"; filename=\"settings.txt\"\r\n"
                    f"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{enc}\r\n")
        body = (f"--{b}\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nsee attached\r\n"
                f"--{b}\r\n{part}--{b}--\r\n")
        if i % 2:
            body = (f"POST /upload HTTP/1.1\r\nHost: app.acme-corp.net\r\n"
                    f"Content-Type: multipart/form-data; boundary={b}\r\n"
                    f"Content-Length: {len(body.encode())}\r\n\r\n") + body
        return kind, body
    if ev == "form_urlencoded":
        if kind == "password_assignment":
            body = f"user=taro&password={urllib.parse.quote_plus(v)}&remember=on"
        else:
            body = f"user=taro&note={urllib.parse.quote_plus(snip)}&submit=1"
        if i % 2:
            body = ("POST /login HTTP/1.1\r\nHost: app.acme-corp.net\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n\r\n") + body
        return kind, body + "\n"
    if ev == "basic_auth_header":
        # A token used as the password of HTTP Basic credentials: the
        # expected kind is the token's own.
        k2 = ["github_token", "npm_token", "gitlab_token", "stripe_key", "openai_api_key",
              "sendgrid_api_key", "huggingface_token", "aws_access_key_id"][i % 8]
        tok = getattr(g, k2)()
        user = {"github_token": "x-access-token", "gitlab_token": "oauth2", "stripe_key": "",
                "sendgrid_api_key": "apikey"}.get(k2, "ci")
        cred = base64.b64encode(f"{user}:{tok}".encode()).decode()
        return k2, g.pick([f"GET /repo.git/info/refs HTTP/1.1\r\nHost: git.internal\r\nAuthorization: Basic {cred}\r\n\r\n",
                           f"curl -H 'Authorization: Basic {cred}' https://registry.internal/\n",
                           f"proxy_set_header Authorization \"Basic {cred}\";\n"])
    if ev == "url_password":
        # Credentials inside a URL, the password percent-encoded where a
        # user would have to.
        pw = g.url_password()[:8] + g.pick(["@", "#", "!", "/", ":"]) + g.s(ALNUM, 6)
        q = urllib.parse.quote(pw, safe="")
        if i % 2:
            u = f"postgres://app:{q}@db.internal.acme-corp.net:5432/orders"
            k2 = "database_url"
        else:
            u = f"https://deploy:{q}@artifacts.acme-corp.net/releases/"
            k2 = "url_basic_auth"
        return k2, g.pick([f"remote = {u}\n", f"git clone {u}\n", f"{{\"url\": \"{u}\"}}\n",
                           f"接続先: {u}\n"])
    raise ValueError(ev)


# ------------------------------------------------------------------- negatives

JA_PROSE = [
    "明日の東京は晴れのち曇り、最高気温は18度の見込みです。夕方から北風が強まるでしょう。",
    "本日のニュース: 新しい図書館が来月開館します。開館時間は午前9時から午後8時までです。",
    "会議の議事録\n1. 前回の振り返り\n2. 来期の予算案について議論した。\n3. 次回は来週水曜日に開催する。",
    "週末は家族で鎌倉へ出かけました。紅葉がとてもきれいでした。",
    "新製品の発売日は12月10日に決まりました。詳細は追ってお知らせします。",
    "システムのメンテナンスのため、今夜22時から翌2時までサービスを停止します。",
    "研修資料の第3章を更新しました。誤字を修正し、図を2枚追加しています。",
    "今月の売上は前年同月比で12%増加しました。主な要因は新規顧客の増加です。",
    "台風の影響で、一部の路線に遅れが出ています。最新の運行情報をご確認ください。",
    "来週の勉強会ではテスト駆動開発について話します。参加希望者は返信してください。",
]
EN_PROSE = [
    "The quarterly review went well; the team shipped three features and closed 42 bugs.",
    "Rain is expected this afternoon, with temperatures dropping to around 9 degrees overnight.",
    "To build the project, install the compiler, run make, and then run the unit tests.",
    "The library now supports streaming responses, which lowers memory use for large files.",
    "Meeting notes: we agreed to postpone the migration until after the holiday freeze.",
    "Our new office opens next month; the move will happen over two weekends.",
    "The password policy requires at least twelve characters and rotation every ninety days.",
    "Tokens are counted per request; the limit resets every minute.",
]


def negative_record(g, i):
    t = i % 24
    if t == 0:
        u = str(uuid.UUID(int=g.r.getrandbits(128), version=4))
        return "uuid", g.pick([f"request_id={u}\n", f'{{"trace_id": "{u}", "status": 200}}\n',
                               f"2026-11-30T10:00:00Z INFO job {u} finished in 132ms\n"])
    if t == 1:
        h = g.s(HEX, 40)
        return "git_sha", g.pick([f"commit {h}\nAuthor: build-bot\n\n    Fix flaky test\n",
                                  f"Merge pull request #412 from feature/cache ({h[:7]})\nresolved {h}\n"])
    if t == 2:
        h = g.s(HEX, 64)
        return "sha256", g.pick([f"{h}  dist/agentbox-1.4.2.tar.gz\n", f"sha256:{h}\n",
                                 f'{{"digest": "sha256:{h}", "size": 10485760}}\n'])
    if t == 3:
        h = g.s(HEX, 40)
        return "sha1", f"SHA1 ({g.pick(['README.md', 'setup.py', 'index.html'])}) = {h}\n"
    if t == 4:
        b = g.b64(g.pick([48, 96, 180]))
        return "base64_binary", g.pick([f'{{"thumbnail": "{b}"}}\n', f"data:image/png;base64,{b}\n",
                                        f"<img src=\"data:image/jpeg;base64,{b}\">\n"])
    if t == 5:
        n = g.my_number()
        return "order_number", g.pick([f"注文番号 {n}\n", f"order id {n} shipped\n",
                                       f"伝票番号: {n}\n", f"お問い合わせ番号 {n} で受け付けました。\n",
                                       f'{{"order_id": "{n}", "items": 3}}\n'])
    if t == 6:
        n = g.luhn_invalid_16()
        return "luhn_invalid", g.pick([f"tracking number {n}\n", f"カード番号: {n}\n",
                                       f"ref={n}\n", f"invoice {n[:4]}-{n[4:8]}-{n[8:12]}-{n[12:]}\n"])
    if t == 7:
        n = g.my_number_fmt(valid=False)
        return "my_number_bad_check", g.pick([f"マイナンバー: {n}\n", f"個人番号 {n}\n"])
    if t == 8:
        return "placeholder", g.pick([
            "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
            "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxx\n", "api_key = \"your_api_key_here\"\n",
            "Authorization: Bearer <TOKEN>\n", "password: ${DB_PASSWORD}\n",
            "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n", "token: \"{{ .Values.token }}\"\n",
            "DATABASE_URL=postgres://user:password@localhost:5432/dbname\n",
            "password = os.environ[\"DB_PASSWORD\"]\n", "\"api_key\": \"<YOUR_API_KEY>\"\n",
            "STRIPE_SECRET_KEY=sk_live_...\n", "export API_KEY=REPLACE_ME\n",
            "client_secret: \"********\"\n"])
    if t == 9:
        return "version", g.pick([
            f"agentbox version {g.r.randint(0, 3)}.{g.r.randint(0, 20)}.{g.r.randint(0, 9)}\n",
            "libssl3 3.0.11-1~deb12u2\n", "Python 3.11.2 (main, Mar 13 2023)\n",
            f"\"version\": \"1.{g.r.randint(0, 9)}.0-rc.{g.r.randint(1, 5)}+build.{g.digits(3)}\"\n"])
    if t == 10:
        return "timestamp", g.pick([
            f"ts={1733000000000 + g.r.randrange(10**9)}\n",
            f"2026-11-{g.r.randint(10, 30)} {g.r.randint(10, 23)}:{g.r.randint(10, 59)}:{g.r.randint(10, 59)},{g.digits(3)} INFO heartbeat ok\n",
            f'{{"created_at": {1700000000 + g.r.randrange(10**8)}, "level": "debug"}}\n'])
    if t == 11:
        return "ip_like_version", g.pick([
            f"firmware {g.r.randint(1, 12)}.{g.r.randint(0, 9)}.{g.r.randint(0, 99)}.{g.r.randint(0, 999)}\n",
            f"kernel 5.{g.r.randint(4, 19)}.0.{g.r.randint(100, 400)}-generic\n",
            f"build {g.r.randint(1, 9)}.{g.r.randint(10, 30)}.0.{g.digits(4)}\n"])
    if t == 12:
        return "code_identifier", g.pick([
            "token_count = 16\n", "password_hash_algo = \"bcrypt\"\n", "max_tokens=4096\n",
            "def get_api_key():\n    return os.environ[\"API_KEY\"]\n",
            "if not secret_name:\n    raise ValueError(\"missing secret name\")\n",
            "private_key_path = \"/etc/ssl/private/server.key\"\n", "access_token_ttl_seconds = 3600\n",
            "PASSWORD_MIN_LENGTH = 12\n", "tokenizer = AutoTokenizer.from_pretrained(model_dir)\n",
            "const apiKeyHeader = \"X-Api-Key\";\n"])
    if t in (13, 14):
        return "ja_prose", "\n".join(g.r.sample(JA_PROSE, 3)) + "\n"
    if t in (15, 16):
        return "en_prose", " ".join(g.r.sample(EN_PROSE, 3)) + "\n"
    if t == 17:
        rows = ["timestamp,sensor,temperature_c,humidity_pct"]
        for k in range(g.r.randint(5, 15)):
            rows.append(f"2026-11-30T{k:02d}:00:00Z,s-{g.r.randint(1, 9)},{g.r.uniform(-5, 35):.2f},{g.r.uniform(10, 95):.1f}")
        return "csv", "\n".join(rows) + "\n"
    if t == 18:
        return "code", g.pick([
            "for i in range(10):\n    total += weights[i] * values[i]\nprint(total)\n",
            "static int parse(const char *s, size_t n)\n{\n\tif (n > 4096)\n\t\treturn -EINVAL;\n\treturn 0;\n}\n",
            "SELECT id, created_at FROM orders WHERE status = 'shipped' LIMIT 100;\n",
            "func main() {\n\tfmt.Println(strconv.Itoa(1234567890))\n}\n"])
    if t == 19:
        return "json_log", json.dumps({"ts": "2026-11-30T10:00:00Z", "level": "info", "msg": "request done",
                                       "path": "/api/v1/items", "status": 200, "duration_ms": g.r.randint(1, 900),
                                       "bytes": g.r.randint(100, 99999)}) + "\n"
    if t == 20:
        return "number_columns", f"{g.digits(12)} {g.digits(12)} {g.luhn_invalid_16()}\n"
    if t == 21:
        return "jp_date_no_label", g.pick([f"{g.r.randint(2020, 2026)}年{g.r.randint(1, 12)}月{g.r.randint(1, 28)}日に出荷しました。\n",
                                           f"更新日: {g.r.randint(2020, 2026)}-{g.r.randint(1, 12):02d}-{g.r.randint(1, 28):02d}\n"])
    if t == 22:
        return "hex_color_css", ".btn{color:#%s;background:#%s;margin:0 4px}\n" % (g.s(HEX, 6), g.s(HEX, 6))
    return "url_no_credentials", g.pick(["https://docs.acme-corp.net/guide/install.html?lang=ja\n",
                                         "git clone https://git.internal.example-co.jp/team/app.git\n",
                                         "postgres://localhost:5432/app_test\n"])


# --------------------------------------------------------------------- corpus

def generate(seed=SEED):
    g = Gen(seed)
    out = []
    for kind in SECRET_KINDS:
        for i in range(PER_SECRET):
            out.append({"id": f"secret-{kind}-{i:03d}", "category": "secret", "kind": kind,
                        "evasion": None, "text": secret_record(g, kind, i)})
    for kind in PII_KINDS:
        for i in range(PER_PII):
            out.append({"id": f"pii-{kind}-{i:03d}", "category": "pii", "kind": kind,
                        "evasion": None, "text": pii_record(g, kind, i)})
    for ev in EVASIONS:
        for i in range(PER_EVASION):
            kind, text = evasion_record(g, ev, i)
            out.append({"id": f"evasion-{ev}-{i:03d}", "category": "evasion", "kind": kind,
                        "evasion": ev, "text": text})
    for i in range(24 * 30):
        sub, text = negative_record(g, i)
        out.append({"id": f"negative-{sub}-{i:04d}", "category": "negative", "kind": None,
                    "evasion": None, "text": text})
    ids = [r["id"] for r in out]
    assert len(ids) == len(set(ids))
    return out


def write_jsonl(records, path):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="the JSONL file to write (default: standard output)")
    ap.add_argument("--seed", type=int, default=SEED)
    a = ap.parse_args()
    recs = generate(a.seed)
    if a.out:
        write_jsonl(recs, a.out)
        cats = {}
        for r in recs:
            cats[r["category"]] = cats.get(r["category"], 0) + 1
        print(f"{len(recs)} records to {a.out}: {cats}", file=sys.stderr)
    else:
        for r in recs:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
