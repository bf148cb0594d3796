#!/usr/bin/env python3
"""Crafts the .qm inputs of issue 20's named loader defects into tests/fuzz-regress/qm/, from a
valid model (default: build-fuzz/seeds/qm/tiny1-int8.qm, which fuzz/seeds.sh makes): 32-bit
size arithmetic that wraps, and input-channel counts beyond the header's mean/std arrays. Each
file's suffix is the code the runtime must refuse it with (tests/test_runtime.c checks it).
Total size and CRC-32 are fixed up, so only the field under test is wrong.

Usage: fuzz/regress_qm.py [MODEL.qm]   (regenerates the files; the committed ones came from it)
"""
import os
import struct
import sys
import zlib

HEADER, RECORD = 96, 48


def records(b):
    """Offsets of the records of a valid blob (runtime/qm_format.h)."""
    n, nq = struct.unpack_from("<II", b, 32)
    off = HEADER + ((2 * nq + 3) & ~3)
    out = []
    for _ in range(n):
        out.append(off)
        wbits = b[off + 2]
        c = struct.unpack_from("<H", b, off + 8)[0]
        nscale, wcount = struct.unpack_from("<II", b, off + 36)
        wfmt, bfmt = b[off + 44], b[off + 45]
        pay = 0
        if wfmt:
            pay = 4 * nscale + (8 if bfmt == 2 else 4 if bfmt else 0) * c
            pay += {1: (wcount * wbits + 7) // 8, 2: 2 * wcount, 3: 4 * wcount}[wfmt]
        off += RECORD + ((pay + 3) & ~3)
    return out


def fixed(b):
    b = bytearray(b)
    struct.pack_into("<I", b, 12, len(b))
    struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])) & 0xFFFFFFFF)
    return bytes(b)


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        root, "build-fuzz/seeds/qm/tiny1-int8.qm")
    base = open(src, "rb").read()
    dense = records(base)[-1]
    cases = {}

    def edit(name, *fields):
        b = bytearray(base)
        for fmt, off, v in fields:
            struct.pack_into(fmt, b, off, v)
        cases[name] = fixed(b)

    # input channels beyond mean[3]/std[3] (the header's u8 allows 255)
    edit("in-c-4.EFORMAT", ("<B", 25, 4))
    edit("in-c-255.EFORMAT", ("<B", 25, 255))
    # 3 x 37838 x 37838 input elements = 2^32 + 175436: 175436 in 32 bits
    edit("input-elems-wrap-32.ELIMIT", ("<B", 25, 3), ("<H", 26, 37838), ("<H", 28, 37838))
    # the dense record's scale count: 2^30 scales = 2^32 bytes (0 in 32 bits); 2^32 - 1 scales
    edit("scales-wrap-32.EFORMAT", ("<I", dense + 36, 1 << 30))
    edit("scales-max.EFORMAT", ("<I", dense + 36, 0xFFFFFFFF))
    # 2^31 weights of 16 bits = 2^32 bytes; of 2 bits, 2^32 - 1 weights: 2^30 bytes
    edit("weights-wrap-32.EFORMAT", ("<B", dense + 2, 16), ("<I", dense + 40, 1 << 31))
    edit("weights-max.EFORMAT", ("<I", dense + 40, 0xFFFFFFFF))
    # an output of 65535 x 65535 x 65535 elements (2^48: wraps 32 bits), on the first record
    # without weights (whose payload does not grow with it)
    plain = [r for r in records(base) if base[r + 44] == 0][0]
    edit("output-elems-wrap.ELIMIT", ("<H", plain + 8, 65535), ("<H", plain + 10, 65535),
         ("<H", plain + 12, 65535))
    out = os.path.join(root, "tests/fuzz-regress/qm")
    os.makedirs(out, exist_ok=True)
    for name, b in sorted(cases.items()):
        open(os.path.join(out, name), "wb").write(b)
    print("regress_qm: %d files in %s" % (len(cases), os.path.normpath(out)))


if __name__ == "__main__":
    main()
