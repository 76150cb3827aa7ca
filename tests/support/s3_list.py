#!/usr/bin/env python3
"""Lists the keys under a prefix of an S3 bucket (ListObjectsV2, every
page), signed with AWS Signature Version 4 from the environment's
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION. Written apart
from img's own client, so that tests see the bucket through other eyes.

Usage: s3_list.py ENDPOINT BUCKET PREFIX   (prints one key per line)
"""
import datetime
import hashlib
import hmac
import os
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET


def sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def get(endpoint, bucket, query):
    u = urllib.parse.urlsplit(endpoint)
    region = os.environ.get("AWS_REGION", "us-east-1")
    now = datetime.datetime.now(datetime.timezone.utc)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    q = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(query.items())
    )
    empty = hashlib.sha256(b"").hexdigest()
    headers = {"host": u.netloc, "x-amz-content-sha256": empty, "x-amz-date": amz}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        ["GET", f"/{bucket}", q, "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, empty]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = sign(("AWS4" + os.environ["AWS_SECRET_ACCESS_KEY"]).encode(), day)
    for part in (region, "s3", "aws4_request"):
        k = sign(k, part)
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = f"AWS4-HMAC-SHA256 Credential={os.environ['AWS_ACCESS_KEY_ID']}/{scope}, SignedHeaders={signed}, Signature={sig}"
    req = urllib.request.Request(f"{endpoint}/{bucket}?{q}", headers={**headers, "authorization": auth})
    with urllib.request.urlopen(req, timeout=30) as r:
        return ET.fromstring(r.read())


def main():
    endpoint, bucket, prefix = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    token = None
    while True:
        query = {"list-type": "2", "prefix": prefix}
        if token:
            query["continuation-token"] = token
        root = get(endpoint, bucket, query)
        ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
        for c in root.findall(f"{ns}Contents"):
            print(c.find(f"{ns}Key").text)
        if root.findtext(f"{ns}IsTruncated") != "true":
            break
        token = root.findtext(f"{ns}NextContinuationToken")


if __name__ == "__main__":
    main()
