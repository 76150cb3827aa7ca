"""Prints how many bytes of layers a store keeps from lazy mounts: the
union of the ranges listed in DIR/*.ranges (each record 16 bytes, start and
length, little-endian). Every range fetched from a registry, TOCs
included, is kept there, so this is what was fetched.

  lazy-held.py STORE/lazy
"""
import glob, struct, sys

total = 0
for f in glob.glob(sys.argv[1] + "/*.ranges"):
    b = open(f, "rb").read()
    spans = sorted(struct.unpack("<QQ", b[i:i + 16]) for i in range(0, len(b) - 15, 16))
    end = 0
    for s, n in spans:
        total += max(0, s + n - max(s, end))
        end = max(end, s + n)
print(total)
