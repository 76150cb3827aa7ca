#!/usr/bin/env python3
"""Writes the hostile inputs kept in testdata/fuzz/<target>/ beside the ones
scripts/fuzz.sh finds: each once broke img or a parser like it (a signed
Content-Length, an endless head, names that leave the root, a TOC that lies
about its sizes, a truncated zstd frame). tests/fuzz_regressions.rs replays
them through img::fuzz_entry on every test run. Deterministic: run it again
and nothing changes.

Usage: scripts/make-fuzz-seeds.py [DIR]   (default: testdata/fuzz)
"""
import json
import os
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "testdata", "fuzz")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


put("http_head", "signed-content-length", "POST /v2/a/bb/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: +38\r\n\r\n")
put("http_head", "two-transfer-encodings", "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n")
put("http_head", "long-header", "GET / HTTP/1.1\r\nX: " + "a" * 70000 + "\r\n\r\n")
put("http_head", "quote-in-host", 'GET /v2/ HTTP/1.1\r\nHost: evil.example"\r\n\r\n')
put("route", "dot-dot-name", "/v2/team/../../etc/passwd/manifests/latest")
put("route", "huge-range", "bytes=18446744073709551615-0")

entry = {"name": "", "type": "reg", "size": 0, "offset": 0, "chunkOffset": 0, "chunkSize": 0, "mode": 420}
def toc(entries):
    return json.dumps({"version": 1, "entries": entries}).encode()

put("estargz_toc", "name-leaves-root", toc([dict(entry, name="../../etc/shadow", size=4, offset=0)]))
put("estargz_toc", "absolute-link", toc([dict(entry, name="a", type="symlink", linkName="/etc/shadow"),
                                          dict(entry, name="a/b", size=1)]))
put("estargz_toc", "hardlink-to-missing", toc([dict(entry, name="h", type="hardlink", linkName="nowhere")]))
put("estargz_toc", "chunk-past-size", toc([dict(entry, name="f", size=10),
                                           dict(entry, name="f", type="chunk", chunkOffset=5, chunkSize=2**62)]))
put("estargz_toc", "huge-size", toc([dict(entry, name="f", size=2**63 - 1)]))
put("estargz_toc", "deep-json", b"[" * 100000)
put("estargz_toc", "footer-only", b"\x1f\x8b\x08\x04" + b"\x00" * 47)
# a zstd frame header that promises more than it holds
put("zstd_chunked_toc", "truncated-frame", b"\x28\xb5\x2f\xfd\x64\x00\x10\x00\x00\x01")
put("zstd_chunked_toc", "bad-position", "18446744073709551615:1:2:1")
put("zstd_chunked_toc", "short-footer", b"\x00" * 63)
# policy.json: a policy the parser must refuse with a line, not a panic or a
# stack overflow; registries.d: YAML that once blew up recursive readers
put("policy", "deep-signed-identity", '{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","signedIdentity":' + "[" * 100000 + "}]}")
put("policy", "duplicate-default", '{"default":[{"type":"reject"}],"default":[{"type":"insecureAcceptAnything"}]}')
put("policy", "lone-surrogate", '{"default":[{"type":"reject\\ud800"}]}')
put("policy", "remap-to-invalid", '{"default":[{"type":"signedBy","keyType":"GPGKeys","keyData":"","signedIdentity":{"type":"remapIdentity","prefix":"a.com/ns/image","signedPrefix":"b.com:5000"}}]}')
put("registries_d", "deep-flow", "docker: " + "[" * 100000)
put("registries_d", "billion-laughs", "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\ndocker: *c\n")
put("registries_d", "duplicate-namespace", "docker:\n  a.com: {lookaside: x}\n  a.com: {lookaside: y}\n")
# PostgreSQL: what a hostile or broken server sends the client (an
# authentication request it never finishes, a row longer than its message,
# a message length of 2 GiB, an error with no fields)
import struct
def msg(tag, body):
    return tag + struct.pack(">i", len(body) + 4) + body
put("pg_server", "sasl-never-ends", msg(b"R", struct.pack(">i", 10) + b"SCRAM-SHA-256\x00\x00") + msg(b"R", struct.pack(">i", 11) + b"r=x,s=,i=0"))
put("pg_server", "row-past-message", msg(b"R", struct.pack(">i", 0)) + msg(b"Z", b"I") + msg(b"D", struct.pack(">hi", 1, 1 << 30)))
put("pg_server", "huge-length", b"R" + struct.pack(">i", 0x7FFFFFFF))
put("pg_server", "empty-error", msg(b"E", b"\x00"))
# an upload's saved SHA-256 state: short, long, a length that disagrees
put("upload_state", "short", b"\x00" * 39)
put("upload_state", "length-disagrees", b"\x00" * 32 + struct.pack(">Q", 70) + b"\x01\x02")
put("upload_state", "max-length", b"\xff" * 40)
