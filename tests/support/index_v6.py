"""Rewrites a layer index file (the store's indexes/<hex>) of format 7 as
img wrote it in format 6, for the check that older index files are still
read: the chunks' CRC-32s become the sha256 of each 64 KiB of the blob,
without the byte saying which check they are.

  python3 index_v6.py INDEX_FILE BLOB

Only an index whose chunks are CRC-32s (what a scan writes) is taken.
"""
import hashlib, struct, sys

MAGIC = b"IMGLIDX\0"
HEADER = 8 + 4 + 32 + 8
CHUNK = 64 << 10
CRC32 = 1


def main():
    index_path, blob_path = sys.argv[1], sys.argv[2]
    data = open(index_path, "rb").read()
    if data[:8] != MAGIC or struct.unpack("<I", data[8:12])[0] != 7:
        sys.exit(f"{index_path}: not a layer index of format 7")
    head_len = struct.unpack("<Q", data[44:52])[0]
    head, access = data[HEADER:HEADER + head_len], data[HEADER + head_len:]
    if hashlib.sha256(head).digest() != data[12:44]:
        sys.exit(f"{index_path}: its head does not match its checksum")
    blob = open(blob_path, "rb").read()
    sums = [hashlib.sha256(blob[i:i + CHUNK]).digest() for i in range(0, len(blob), CHUNK)]
    # The chunk list ends the head: kind, count, a CRC-32 each.
    tail = 1 + 8 + 4 * len(sums)
    kind, count = head[-tail], struct.unpack("<Q", head[-tail + 1:-tail + 9])[0]
    if kind != CRC32 or count != len(sums):
        sys.exit(f"{index_path}: the chunk list is not {len(sums)} CRC-32s")
    body = head[:-tail] + struct.pack("<Q", len(sums)) + b"".join(sums)
    out = MAGIC + struct.pack("<I", 6) + hashlib.sha256(body).digest() + struct.pack("<Q", len(body)) + body + access
    with open(index_path, "wb") as f:
        f.write(out)


if __name__ == "__main__":
    main()
