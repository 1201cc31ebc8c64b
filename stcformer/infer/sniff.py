"""What a file holds, told from its first bytes: a video container, an image, or something else.

Standard library only, so ``python -m stcformer.infer`` refuses an empty, non-video or image
``--video`` in a fraction of a second, before torch, mediapipe or ffmpeg start. :func:`cut_short`
reads the container's own size fields (RIFF/AVI, MP4/MOV boxes, Matroska), so a file that was cut
short is told apart from one that ffmpeg merely fails on; :func:`avi_frames` is the frame count an
AVI header announces.
"""
from __future__ import annotations

import os
import struct
from typing import Optional, Tuple

HEAD = 1024  # enough for every signature below (MPEG-TS needs three 188-byte packets)

IMAGES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
          (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"), (b"\xff\x0a", "JPEG XL"), (b"8BPS", "Photoshop"))
# longest first where one signature starts another (the MPEG start codes)
VIDEOS = ((b"\x1a\x45\xdf\xa3", "Matroska/WebM"), (b"FLV\x01", "FLV"), (b"OggS", "Ogg"),
          (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "ASF/WMV"), (b"YUV4MPEG2", "Y4M"), (b"DKIF", "IVF"),
          (b".RMF", "RealMedia"), (b"\x06\x0e\x2b\x34", "MXF"), (b"nut/multimedia container", "NUT"),
          (b"\x00\x00\x01\xba", "MPEG-PS"), (b"\x00\x00\x01\xb3", "MPEG video"),
          (b"\x00\x00\x00\x01", "H.264/H.265 stream"), (b"\x00\x00\x01", "MPEG stream"))
# what a --video given by mistake often is: named so the message can say what to do instead
OTHERS = ((b"\x93NUMPY", "a NumPy array; keypoints go with --keypoints"),
          (b"PK\x03\x04", "a ZIP archive; an .npz of keypoints goes with --keypoints"),
          (b"%PDF", "a PDF document"), (b"ID3", "an MP3 sound file"), (b"fLaC", "a FLAC sound file"))
ISO_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"}  # first box of an MP4/MOV
IMAGE_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"heim": "HEIC", b"heis": "HEIC", b"mif1": "HEIF",
                b"avif": "AVIF"}
RIFF_KINDS = {b"AVI ": ("video", "AVI"), b"AVIX": ("video", "AVI"), b"AMV ": ("video", "AMV"),
              b"WEBP": ("image", "WebP"), b"WAVE": ("other", "a WAV sound file")}


def read_head(path) -> bytes:
    """The first :data:`HEAD` bytes of ``path`` (OSError as ``open`` raises it)."""
    with open(path, "rb") as f:
        return f.read(HEAD)


def sniff(head: bytes) -> Tuple[str, str]:
    """``(kind, what)`` of a file that starts with ``head``: kind ``"video"`` (what: the container),
    ``"image"`` (the format; a GIF is ``"gif"``, which may be animated), ``"empty"``, or ``"other"``
    (what: words for what it is, or ``""`` when nothing is recognised)."""
    if not head:
        return "empty", ""
    if head[4:8] in ISO_BOXES:
        brand = head[8:12] if head[4:8] == b"ftyp" else b""
        if brand in IMAGE_BRANDS:
            return "image", IMAGE_BRANDS[brand]
        return "video", "QuickTime" if brand == b"qt  " else "MP4"
    if head[:4] == b"RIFF" and head[8:12] in RIFF_KINDS:
        return RIFF_KINDS[head[8:12]]
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif", "GIF"
    for table, kind in ((IMAGES, "image"), (VIDEOS, "video"), (OTHERS, "other")):
        for magic, what in table:
            if head.startswith(magic):
                return kind, what
    if head[:2] == b"BM" and head[6:10] == b"\0\0\0\0":
        return "image", "BMP"
    if any(len(head) > off + 376 and head[off] == head[off + 188] == head[off + 376] == 0x47 for off in (0, 4)):
        return "video", "MPEG-TS"  # sync byte every 188 bytes (at 4 in 192-byte M2TS packets)
    return "other", _text(head)


def _text(head: bytes) -> str:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the head
            return ""
        text = head[:exc.start].decode("utf-8")
    if any(c < " " and c not in "\t\n\r\f" for c in text):
        return ""
    if text.lstrip()[:1] in ("{", "["):
        return "JSON text; keypoints go with --keypoints"
    return "text"


def gif_frames(path, limit: int = 2) -> int:
    """How many images a GIF holds, counting up to ``limit`` (an animated GIF has more than one)."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 13 + (3 << ((data[10] & 7) + 1) if len(data) > 10 and data[10] & 0x80 else 0)
    count = 0
    while pos < len(data) and count < limit:
        block = data[pos]
        if block == 0x2C:  # an image: descriptor, local colour table, LZW code size, data blocks
            count += 1
            flags = data[pos + 9] if pos + 9 < len(data) else 0
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        elif block == 0x21:  # an extension: label, then data blocks
            pos += 2
        else:  # the trailer, or damage
            break
        while pos < len(data) and data[pos]:
            pos += data[pos] + 1
        pos += 1
    return count


def cut_short(path, head: bytes) -> Optional[Tuple[int, int]]:
    """``(bytes in the file, bytes its container says it has)`` when the file ends before its
    container's own size fields say it should, else None (also for containers without them)."""
    size = os.path.getsize(path)
    need = None
    if head[:4] == b"RIFF" and len(head) >= 8:
        need = 8 + struct.unpack("<I", head[4:8])[0]
    elif head[4:8] in ISO_BOXES:
        need = _iso_end(path, size)
    elif head[:4] == b"\x1a\x45\xdf\xa3":
        need = _matroska_end(head)
    return (size, need) if need is not None and need > size else None


def _iso_end(path, size: int) -> Optional[int]:
    """Where the last top-level MP4/MOV box ends (past ``size`` when the file was cut)."""
    pos = 0
    with open(path, "rb") as f:
        for _ in range(100000):
            if pos + 8 > size:
                break
            f.seek(pos)
            box = f.read(16)
            n = struct.unpack(">I", box[:4])[0]
            if n == 1 and len(box) == 16:
                n = struct.unpack(">Q", box[8:16])[0]
            if n == 0:  # the last box runs to the end of the file
                return None
            if n < 8:
                return None  # not a box: damage, not a cut
            pos += n
    return pos


def _vint(data: bytes, pos: int) -> Tuple[Optional[int], int]:
    """A Matroska variable-size integer at ``pos``: (value, or None when 'unknown', next pos)."""
    first = data[pos]
    length = 9 - first.bit_length() if first else 9
    if length > 8 or pos + length > len(data):
        raise ValueError("bad vint")
    value = first & (0xFF >> length)
    for b in data[pos + 1:pos + length]:
        value = (value << 8) | b
    return (None if value == (1 << (7 * length)) - 1 else value), pos + length


def _matroska_end(head: bytes) -> Optional[int]:
    """Where the Segment after the EBML header ends (None: size unknown, as in live streams)."""
    try:
        size, pos = _vint(head, 4)
        pos += size
        if head[pos:pos + 4] != b"\x18\x53\x80\x67":
            return None
        size, pos = _vint(head, pos + 4)
    except (ValueError, IndexError, TypeError):
        return None
    return None if size is None else pos + size


def avi_frames(head: bytes) -> Optional[int]:
    """The frame count in an AVI's main header (``avih``), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"AVI " and head[12:16] == b"LIST" and head[20:28] == b"hdrlavih":
        if len(head) >= 52:
            return struct.unpack("<I", head[48:52])[0] or None
    return None


__all__ = ["sniff", "read_head", "gif_frames", "cut_short", "avi_frames", "HEAD"]
