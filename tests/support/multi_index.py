#!/usr/bin/env python3
"""Turns an OCI layout of one image into one whose index.json names an
image index of two platforms (linux/amd64 and linux/arm64, both the same
manifest), tagged "multi".

Usage: multi_index.py LAYOUT-DIR
"""
import hashlib
import json
import os
import sys

d = sys.argv[1]
ix = json.load(open(os.path.join(d, "index.json")))
m = ix["manifests"][0]
entry = lambda arch: {"mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"],
                      "platform": {"os": "linux", "architecture": arch}}
inner = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [entry("amd64"), entry("arm64")]}).encode()
h = hashlib.sha256(inner).hexdigest()
open(os.path.join(d, "blobs/sha256", h), "wb").write(inner)
ix["manifests"] = [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + h,
                    "size": len(inner), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]
json.dump(ix, open(os.path.join(d, "index.json"), "w"))
