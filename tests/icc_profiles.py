"""A Display P3 colour profile (what every iPhone photo carries), built here: no ICC file ships with the test
machine, and Pillow makes only sRGB and Lab ones. An ICC v2 matrix profile: the P3 primaries and D65 white,
adapted to the D50 connection space (Bradford), gamma 2.2 curves."""

from __future__ import annotations

import struct

import numpy as np

P3_PRIMARIES = [(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)]
D65 = (0.3127, 0.3290)
D50_XYZ = np.array([0.9642, 1.0, 0.8249])
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def _xyz(x: float, y: float) -> np.ndarray:
    return np.array([x / y, 1.0, (1 - x - y) / y])


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(values) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in values)


def _colorants() -> np.ndarray:
    """The RGB -> XYZ matrix (columns: red, green, blue), adapted from D65 to D50."""
    white = _xyz(*D65)
    matrix = np.stack([_xyz(*p) for p in P3_PRIMARIES], axis=1)
    matrix = matrix * np.linalg.solve(matrix, white)
    cone = np.diag((BRADFORD @ D50_XYZ) / (BRADFORD @ white))
    return np.linalg.inv(BRADFORD) @ cone @ BRADFORD @ matrix


def p3_profile(description: str = "Display P3") -> bytes:
    matrix = _colorants()
    text = description.encode() + b"\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * (12 + 67)
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", _xyz_tag(D50_XYZ)), (b"rXYZ", _xyz_tag(matrix[:, 0])),
            (b"gXYZ", _xyz_tag(matrix[:, 1])), (b"bXYZ", _xyz_tag(matrix[:, 2])), (b"rTRC", curve),
            (b"gTRC", curve), (b"bTRC", curve), (b"cprt", b"text\0\0\0\0none\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for signature, data in tags:
        body += b"\0" * (-(offset + len(body)) % 4)  # each tag starts on a 4-byte boundary
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
              + b"\0" * 12 + b"acspAPPL" + b"\0" * 24 + _s15(D50_XYZ[0]) + _s15(D50_XYZ[1]) + _s15(D50_XYZ[2]))
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body
