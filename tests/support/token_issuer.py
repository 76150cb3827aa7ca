#!/usr/bin/env python3
"""A token issuer for distribution's token auth, for tests/registry.sh.

Serves GET /token over HTTPS on 127.0.0.1: checks Basic credentials against
a fixed user list and answers {"token", "access_token", "expires_in"} with a
JWT signed RS256 by `openssl dgst` (no Python packages needed). The JWT's
x5c header carries the signing certificate, which the registry checks
against its rootcertbundle.

  token_issuer.py --port P --cert server.crt --key server.key
                  --sign-cert sign.crt --sign-key sign.key
                  --issuer NAME --service NAME --user NAME:PASSWORD:ACTIONS...

ACTIONS is "*" (whatever is asked for) or a comma-separated list such as
"pull"; a user only gets the asked-for actions that are in it. Anonymous
requests (no Authorization) get a token with no access, as public token
services do. Wrong credentials get 401. One line per request goes to
stderr: user=... scope=... granted=...
"""

import argparse
import base64
import http.server
import json
import secrets
import ssl
import subprocess
import sys
import time
import urllib.parse


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem_to_der(path: str) -> bytes:
    text = open(path).read()
    body = text.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return base64.b64decode("".join(body.split()))


def parse_scope(scope: str):
    """"repository:a/b:pull,push" -> ("repository", "a/b", ["pull", "push"])."""
    typ, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not typ or not name:
        return None
    return typ, name, [a for a in actions.split(",") if a]


class Issuer:
    def __init__(self, args):
        self.args = args
        self.x5c = [base64.b64encode(pem_to_der(args.sign_cert)).decode()]
        self.users = {}
        for u in args.user:
            name, password, actions = u.split(":", 2)
            self.users[name] = (password, None if actions == "*" else set(actions.split(",")))

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", self.args.sign_key],
            input=signing_input.encode(), capture_output=True, check=True,
        ).stdout
        return signing_input + "." + b64url(sig)

    def token(self, user: str, access: list) -> str:
        now = int(time.time())
        return self.sign({
            "iss": self.args.issuer,
            "sub": user,
            "aud": self.args.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        })


class Handler(http.server.BaseHTTPRequestHandler):
    issuer: Issuer = None

    def log_message(self, fmt, *a):
        pass

    def answer(self, status: int, body: dict, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            return self.answer(404, {"error": "not found"})
        query = urllib.parse.parse_qs(url.query)
        scopes = [s for q in query.get("scope", []) for s in q.split(" ") if s]
        user = ""
        auth = self.headers.get("Authorization", "")
        if auth:
            try:
                scheme, _, value = auth.partition(" ")
                assert scheme.lower() == "basic"
                user, _, password = base64.b64decode(value).decode().partition(":")
            except Exception:
                return self.refuse(scopes, "?")
            known = self.issuer.users.get(user)
            if known is None or known[0] != password:
                return self.refuse(scopes, user)
            allowed = known[1]
        else:
            allowed = set()
        if query.get("service", [self.issuer.args.service])[0] != self.issuer.args.service:
            return self.answer(400, {"error": "unknown service"})
        access = []
        for s in scopes:
            parsed = parse_scope(s)
            if parsed is None:
                continue
            typ, name, actions = parsed
            granted = [a for a in actions if allowed is None or a in allowed]
            if granted:
                access.append({"type": typ, "name": name, "actions": granted})
        print(f"user={user or '-'} scope={','.join(scopes) or '-'} granted={json.dumps(access)}",
              file=sys.stderr, flush=True)
        tok = self.issuer.token(user, access)
        self.answer(200, {"token": tok, "access_token": tok, "expires_in": 300})

    def refuse(self, scopes, user):
        print(f"user={user} scope={','.join(scopes) or '-'} refused", file=sys.stderr, flush=True)
        self.answer(401, {"error": "bad credentials"}, [("WWW-Authenticate", 'Basic realm="token"')])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--sign-cert", required=True)
    p.add_argument("--sign-key", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--user", action="append", default=[])
    args = p.parse_args()
    Handler.issuer = Issuer(args)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
