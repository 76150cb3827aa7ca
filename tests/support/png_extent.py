#!/usr/bin/env python3
"""Prints WIDTH HEIGHT TOP BOTTOM LEFT RIGHT DARK of a PNG screenshot: its
size, the box of its pixels that are not near-white, and how many pixels
are dark (text). Reads 8-bit RGB and RGBA PNGs (what chromium writes) with
the standard library only.

Usage: png_extent.py FILE.png
"""
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path} is not a PNG")
    pos, idat, width = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            if depth != 8 or color not in (2, 6):
                raise SystemExit(f"{path}: only 8-bit RGB or RGBA is read (depth {depth}, color type {color})")
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return width, height, bpp, rows


def main():
    w, h, bpp, rows = read_png(sys.argv[1])
    top, bottom, left, right, dark = h, -1, w, -1, 0
    for y, line in enumerate(rows):
        for x in range(w):
            r, g, b = line[x * bpp:x * bpp + 3]
            if r < 235 or g < 235 or b < 235:
                top, bottom = min(top, y), max(bottom, y)
                left, right = min(left, x), max(right, x)
                if r < 100 and g < 100 and b < 100:
                    dark += 1
    print(w, h, top, bottom, left, right, dark)


if __name__ == "__main__":
    main()
