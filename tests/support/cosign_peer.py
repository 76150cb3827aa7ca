#!/usr/bin/python3
"""An independent sigstore (cosign) signer and verifier for the trust suite,
built on PyCA cryptography and PyNaCl (libsodium), since Debian's skopeo and
podman are built with sigstore disabled.

  cosign_peer.py sign KEY PASSFILE REGISTRY REPO TAG IDENTITY
      decrypts KEY (cosign's encrypted private key format: scrypt + nacl
      secretbox over PKCS#8), signs the manifest REPO:TAG names for
      IDENTITY, and pushes the signature as cosign does: a layer of the
      sha256-<hex>.sig manifest, the signature in its annotation.
  cosign_peer.py verify PUB REGISTRY REPO TAG IDENTITY
      fetches the sha256-<hex>.sig manifest of REPO:TAG and checks that one
      of its layers is a payload for IDENTITY and the manifest's digest,
      signed by PUB. Exits 1 when none is.

The registry is spoken to in plain HTTP without credentials (127.0.0.1).
"""
import base64
import hashlib
import json
import sys
import urllib.error
import urllib.request

import nacl.secret
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.oci.image.index.v1+json"])


def request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def manifest(reg, repo, ref):
    st, h, body = request("GET", f"http://{reg}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    return st, body


def push_blob(reg, repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    st, h, _ = request("POST", f"http://{reg}/v2/{repo}/blobs/uploads/")
    assert st == 202, f"upload start: {st}"
    loc = h.get("Location") or h.get("location")
    if loc.startswith("/"):
        loc = f"http://{reg}{loc}"
    sep = "&" if "?" in loc else "?"
    st, _, body = request("PUT", f"{loc}{sep}digest={d}", data=data,
                          headers={"Content-Type": "application/octet-stream"})
    assert st == 201, f"upload: {st} {body!r}"
    return d


def private_key(path, passfile):
    pem = open(path).read()
    b64 = "".join(l for l in pem.splitlines() if not l.startswith("-----"))
    doc = json.loads(base64.b64decode(b64))
    assert doc["kdf"]["name"] == "scrypt" and doc["cipher"]["name"] == "nacl/secretbox", doc
    p = doc["kdf"]["params"]
    password = open(passfile).read().splitlines()[0].encode()
    key = hashlib.scrypt(password, salt=base64.b64decode(doc["kdf"]["salt"]), n=p["N"], r=p["r"], p=p["p"],
                         maxmem=256 * 1024 * 1024, dklen=32)
    der = nacl.secret.SecretBox(key).decrypt(base64.b64decode(doc["ciphertext"]),
                                             base64.b64decode(doc["cipher"]["nonce"]))
    return serialization.load_der_private_key(der, password=None)


def payload(identity, digest):
    return json.dumps({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }, separators=(",", ":")).encode()


def sign(keyfile, passfile, reg, repo, tag, identity):
    st, body = manifest(reg, repo, tag)
    assert st == 200, f"manifest {repo}:{tag}: {st}"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    key = private_key(keyfile, passfile)
    data = payload(identity, digest)
    sig = base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()
    pd = push_blob(reg, repo, data)
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [pd]}}).encode()
    cd = push_blob(reg, repo, config)
    m = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config), "digest": cd},
        "layers": [{"mediaType": PAYLOAD_TYPE, "size": len(data), "digest": pd,
                    "annotations": {SIG_ANNOTATION: sig}}],
    }).encode()
    st, _, b = request("PUT", f"http://{reg}/v2/{repo}/manifests/sha256-{digest[7:]}.sig", data=m,
                       headers={"Content-Type": OCI_MANIFEST})
    assert st == 201, f"signature manifest: {st} {b!r}"


def verify(pubfile, reg, repo, tag, identity):
    pub = serialization.load_pem_public_key(open(pubfile, "rb").read())
    st, body = manifest(reg, repo, tag)
    assert st == 200, f"manifest {repo}:{tag}: {st}"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    st, sigm = manifest(reg, repo, f"sha256-{digest[7:]}.sig")
    if st != 200:
        print(f"no signature manifest for {digest} ({st})", file=sys.stderr)
        return 1
    for l in json.loads(sigm)["layers"]:
        if l.get("mediaType") != PAYLOAD_TYPE:
            continue
        st, _, data = request("GET", f"http://{reg}/v2/{repo}/blobs/{l['digest']}")
        if st != 200 or "sha256:" + hashlib.sha256(data).hexdigest() != l["digest"]:
            continue
        try:
            pub.verify(base64.b64decode(l["annotations"][SIG_ANNOTATION]), data, ec.ECDSA(hashes.SHA256()))
        except Exception as e:  # a bad signature: try the next
            print(f"layer {l['digest']}: {e!r}", file=sys.stderr)
            continue
        crit = json.loads(data)["critical"]
        if crit["image"]["docker-manifest-digest"] == digest and crit["identity"]["docker-reference"] == identity \
                and crit["type"] == "cosign container image signature":
            print(f"verified: {identity} {digest}")
            return 0
        print(f"layer {l['digest']}: signs {crit}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "sign":
        sign(*args)
    elif cmd == "verify":
        sys.exit(verify(*args))
    else:
        sys.exit(f"unknown command {cmd}")
