"""The EXIF orientation of a JPEG or PNG: how a camera says the stored pixels must be turned for display.

Phones store the sensor's pixels as shot and record the turn in EXIF tag 0x0112 (1 = as stored,
6 = turn 90° clockwise, ...). TensorFlow's decoders ignore it, so a portrait photo would reach
the model sideways; `archbuilder.data.images` applies the turn read here. Only the file's header
is read, in plain Python, no Pillow: a JPEG keeps EXIF in its APP1 segment, a PNG in an `eXIf`
chunk, both before the image data (a PNG's `eXIf` after its first IDAT is ignored, as the PNG
specification lets decoders do).
"""

from __future__ import annotations

import os
import struct

ORIENTATION_TAG = 0x0112
_HEADER_BYTES = 1 << 16  # APP1 segments are at most 64 KiB; EXIF is the first or second segment
HEADER_BYTES = _HEADER_BYTES + 1024  # what is read of each file: room for an APP0 segment before APP1
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def exif_orientation(path: str | os.PathLike | bytes) -> int:
    """1..8 from the file's EXIF, 1 (as stored) when there is none or it cannot be read."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
    except OSError:
        return 1  # the decoder reports unreadable files, naming them
    return orientation_in_header(head)


def orientation_in_header(head: bytes) -> int:
    """`exif_orientation` of a file whose first HEADER_BYTES are `head`."""
    try:
        value = _orientation_in_png(head) if head.startswith(_PNG_SIGNATURE) else _orientation_in_jpeg(head)
    except (struct.error, IndexError, ValueError):
        return 1  # damaged EXIF: show the pixels as stored, like most viewers
    return value if value in range(1, 9) else 1


def _orientation_in_jpeg(data: bytes) -> int:
    if data[:2] != b"\xff\xd8":
        return 1  # not a JPEG
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return 1
        marker = data[position + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no EXIF before the pixels
            return 1
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        segment = data[position + 4 : position + 2 + length]
        if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            return _orientation_in_tiff(segment[6:])
        position += 2 + length
    return 1


def _orientation_in_png(data: bytes) -> int:
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):  # chunks: length, type, data, CRC
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind in (b"IDAT", b"IEND"):
            return 1
        if kind == b"eXIf":
            payload = data[position + 8 : position + 8 + length]
            # The chunk holds the TIFF structure itself; some writers keep JPEG's "Exif\0\0" before it.
            return _orientation_in_tiff(payload[6:] if payload.startswith(b"Exif\x00\x00") else payload)
        position += 12 + length
    return 1


def _orientation_in_tiff(tiff: bytes) -> int:
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    (first_ifd,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack(order + "H", tiff[first_ifd : first_ifd + 2])
    for entry in range(count):
        start = first_ifd + 2 + 12 * entry
        tag, kind, _ = struct.unpack(order + "HHI", tiff[start : start + 8])
        if tag == ORIENTATION_TAG and kind == 3:  # SHORT, stored in the entry itself
            return struct.unpack(order + "H", tiff[start + 8 : start + 10])[0]
    return 1
