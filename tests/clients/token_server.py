"""A real token issuer for registry:2's `auth.token` (the distribution token
flow): ES256 JWTs signed by a key whose self-signed certificate is the
registry's `rootcertbundle` and travels in the token's `x5c` header.

Usage: token_server.py --cert-out FILE [--user NAME:PASSWORD]...
                       [--anonymous-pull] [--expires-in SECONDS]
Prints `listening PORT` once it serves on 127.0.0.1, then one JSON line
per token request (never the Authorization value).
"""
import argparse
import base64
import datetime
import json
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ISSUER = "test-issuer"

p = argparse.ArgumentParser()
p.add_argument("--cert-out", required=True)
p.add_argument("--user", action="append", default=[])
p.add_argument("--anonymous-pull", action="store_true")
p.add_argument("--expires-in", type=int, default=300)
args = p.parse_args()
users = dict(u.split(":", 1) for u in args.user)

key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry-gateway test token issuer")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (
    x509.CertificateBuilder()
    .subject_name(name)
    .issuer_name(name)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(minutes=5))
    .not_valid_after(now + datetime.timedelta(days=1))
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .add_extension(
        x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                      key_encipherment=False, data_encipherment=False, key_agreement=False,
                      crl_sign=False, encipher_only=False, decipher_only=False),
        critical=True,
    )
    .sign(key, hashes.SHA256())
)
with open(args.cert_out, "wb") as f:
    f.write(cert.public_bytes(serialization.Encoding.PEM))
x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
signing_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())


def basic_user(header):
    """The Basic user when the password is right; None when absent; False when wrong."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return False
    return user if users.get(user) == password and password else False


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        user = basic_user(self.headers.get("Authorization"))
        scopes = q.get("scope", [])
        if url.path != "/token" or user is False:
            self.reply(401, {"errors": [{"code": "UNAUTHORIZED"}]}, user, scopes, [])
            return
        granted = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            allowed = wanted if user else [a for a in wanted if a == "pull" and args.anonymous_pull]
            granted.append({"type": kind, "name": repo, "actions": allowed})
        t = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": q.get("service", [""])[0], "exp": t + args.expires_in,
                  "nbf": t - 5, "iat": t, "jti": secrets.token_hex(8), "access": granted}
        token = jwt.encode(claims, signing_key, algorithm="ES256", headers={"x5c": x5c})
        issued = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()
        self.reply(200, {"token": token, "access_token": token, "expires_in": args.expires_in,
                         "issued_at": issued}, user, scopes, granted)

    def reply(self, status, body, user, scopes, granted):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        print(json.dumps({"user": user or None, "scopes": scopes, "granted": granted, "status": status}),
              flush=True)

    def log_message(self, *a):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening {server.server_address[1]}", flush=True)
sys.stdout.flush()
server.serve_forever()
