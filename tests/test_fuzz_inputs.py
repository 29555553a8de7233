"""Malformed image files end in a clear error or a correct image, never a crash, hang or partial output.

Issue 13 ("Scale-out and reliability") asks for at least 300 malformed files - truncated at random
offsets, random bytes, wrong extensions, headers claiming huge or zero sizes, 16-bit and palette
edge cases - run through `restorekit.io` and `restorekit restore`. A seeded generator builds them from
real small encodes (so the decoders get past the header and really try); header rewrites keep PNG
CRCs valid for the same reason. Run with `-s` to see the outcome counts.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import png as pypng
import pytest
import tifffile
import torch
from PIL import Image

from restorekit.errors import ImageError
from restorekit.io import read_image, write_image

SEED = 20240613
SECONDS_PER_FILE = 10.0  # safety limit from the issue, not a benchmark
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    """One fuzz file. `expect`: 'any' (error or image), 'refused', 'same' (must decode to `original`)."""

    name: str
    data: bytes
    expect: str
    original: str | None = None  # name of the valid case whose pixels a 'same' case must reproduce


# ------------------------------------------------------------------------------------ valid encodes


def _pixels(rng: np.random.Generator, height: int, width: int, channels: int, top: int) -> np.ndarray:
    """Half noise, half smooth ramps: the decoders see both incompressible and repetitive data."""
    if rng.random() < 0.5:
        return rng.integers(0, top + 1, (height, width, channels)).astype(np.uint16 if top > 255 else np.uint8)
    ramp = np.add.outer(np.arange(height), np.arange(width))[:, :, None] * (top // 128 + 1)
    return (np.broadcast_to(ramp, (height, width, channels)) % (top + 1)).astype(np.uint16 if top > 255 else np.uint8)


def _pil(array: np.ndarray, fmt: str, **options) -> bytes:
    image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    blob = io.BytesIO()
    image.save(blob, format=fmt, **options)
    return blob.getvalue()


def _pypng(array: np.ndarray, **options) -> bytes:
    height, width, channels = array.shape
    blob = io.BytesIO()
    pypng.Writer(width, height, greyscale=channels in (1, 2), alpha=channels in (2, 4),
                 bitdepth=16 if array.dtype == np.uint16 else 8, **options).write(blob, array.reshape(height, -1))
    return blob.getvalue()


def _palette_png(array: np.ndarray, transparency: bool) -> bytes:
    image = Image.fromarray(array).quantize(colors=int(np.clip(array.size // 3, 2, 200)))
    options = {"transparency": bytes(range(0, 250, 10))} if transparency else {}
    blob = io.BytesIO()
    image.save(blob, format="PNG", **options)
    return blob.getvalue()


def _tiff16(array: np.ndarray) -> bytes:
    blob = io.BytesIO()
    tifffile.imwrite(blob, array if array.shape[2] > 1 else array[:, :, 0], compression="zlib",
                     photometric="rgb" if array.shape[2] == 3 else "minisblack")
    return blob.getvalue()


# (name, suffix, encoder(rng, height, width))
ENCODERS: list[tuple[str, str, Callable[[np.random.Generator, int, int], bytes]]] = [
    ("png-grey8", ".png", lambda r, h, w: _pil(_pixels(r, h, w, 1, 255), "PNG")),
    ("png-rgb8", ".png", lambda r, h, w: _pil(_pixels(r, h, w, 3, 255), "PNG")),
    ("png-rgba8", ".png", lambda r, h, w: _pil(_pixels(r, h, w, 4, 255), "PNG")),
    ("png-greyalpha8", ".png", lambda r, h, w: _pypng(_pixels(r, h, w, 2, 255))),
    ("png-grey16", ".png", lambda r, h, w: _pypng(_pixels(r, h, w, 1, 65535))),
    ("png-rgb16", ".png", lambda r, h, w: _pypng(_pixels(r, h, w, 3, 65535))),
    ("png-rgba16", ".png", lambda r, h, w: _pypng(_pixels(r, h, w, 4, 65535))),
    ("png-interlaced", ".png", lambda r, h, w: _pypng(_pixels(r, h, w, 3, 255), interlace=True)),
    ("png-palette", ".png", lambda r, h, w: _palette_png(_pixels(r, h, w, 3, 255), transparency=False)),
    ("png-palette-trns", ".png", lambda r, h, w: _palette_png(_pixels(r, h, w, 3, 255), transparency=True)),
    ("png-bilevel", ".png", lambda r, h, w: _pil(_pixels(r, h, w, 1, 255) > 127, "PNG")),
    ("jpeg-rgb", ".jpg", lambda r, h, w: _pil(_pixels(r, h, w, 3, 255), "JPEG", quality=90)),
    ("jpeg-grey-progressive", ".jpeg", lambda r, h, w: _pil(_pixels(r, h, w, 1, 255), "JPEG", progressive=True)),
    ("tiff-rgb8", ".tif", lambda r, h, w: _pil(_pixels(r, h, w, 3, 255), "TIFF")),
    ("tiff-grey8-deflate", ".tiff", lambda r, h, w: _pil(_pixels(r, h, w, 1, 255), "TIFF", compression="tiff_deflate")),
    ("tiff-rgb16", ".tif", lambda r, h, w: _tiff16(_pixels(r, h, w, 3, 65535))),
    ("tiff-grey16", ".tif", lambda r, h, w: _tiff16(_pixels(r, h, w, 1, 65535))),
    ("bmp-rgb", ".bmp", lambda r, h, w: _pil(_pixels(r, h, w, 3, 255), "BMP")),
    ("bmp-grey", ".bmp", lambda r, h, w: _pil(_pixels(r, h, w, 1, 255), "BMP")),
    ("webp-lossy", ".webp", lambda r, h, w: _pil(_pixels(r, h, w, 3, 255), "WEBP", quality=80)),
    ("webp-lossless-alpha", ".webp", lambda r, h, w: _pil(_pixels(r, h, w, 4, 255), "WEBP", lossless=True)),
]

# ------------------------------------------------------------------------------------ header rewrites


def png_chunks(blob: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos + 8 <= len(blob):
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        chunks.append((blob[pos + 4:pos + 8], blob[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_from_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """Reassemble with correct CRCs, so the decoder accepts the chunks and reaches the pixel data."""
    body = b"".join(struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d)) for k, d in chunks)
    return b"\x89PNG\r\n\x1a\n" + body


def png_with_ihdr(blob: bytes, **fields: int) -> bytes:
    names = ("width", "height", "depth", "colour", "compression", "filter", "interlace")
    chunks = png_chunks(blob)
    values = dict(zip(names, struct.unpack(">IIBBBBB", chunks[0][1])))
    values.update(fields)
    chunks[0] = (b"IHDR", struct.pack(">IIBBBBB", *(values[n] for n in names)))
    return png_from_chunks(chunks)


def png_with_short_stream(blob: bytes, keep: float) -> bytes:
    """The IDAT zlib stream re-compressed, complete but holding only the first `keep` of the rows' bytes."""
    chunks = png_chunks(blob)
    raw = zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT"))
    short = zlib.compress(raw[: int(len(raw) * keep)])
    first = next(i for i, (k, _) in enumerate(chunks) if k == b"IDAT")
    rest = [c for c in chunks if c[0] != b"IDAT"]
    return png_from_chunks(rest[:first] + [(b"IDAT", short)] + rest[first:])


def png_with_short_palette(blob: bytes, entries: int) -> bytes:
    """PLTE cut to `entries` colours (pixels then index past its end); tRNS cut to match."""
    chunks = [(k, d[: 3 * entries] if k == b"PLTE" else d[:entries] if k == b"tRNS" else d) for k, d in png_chunks(blob)]
    return png_from_chunks(chunks)


def jpeg_with_size(blob: bytes, width: int, height: int) -> bytes:
    sof = next(m.start() for m in re.finditer(rb"\xff[\xc0-\xc2]", blob))
    return blob[: sof + 5] + struct.pack(">HH", height, width) + blob[sof + 9:]


def tiff_with_size(blob: bytes, width: int, height: int) -> bytes:
    """Rewrite the first IFD's ImageWidth/ImageLength entries (as LONGs) in a little-endian TIFF."""
    out = bytearray(blob)
    (ifd,) = struct.unpack("<I", blob[4:8])
    (count,) = struct.unpack("<H", blob[ifd:ifd + 2])
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        (tag,) = struct.unpack("<H", blob[entry:entry + 2])
        if tag in (256, 257):
            out[entry + 2:entry + 12] = struct.pack("<HII", 4, 1, width if tag == 256 else height)
    return bytes(out)


def bmp_with_size(blob: bytes, width: int, height: int) -> bytes:
    return blob[:18] + struct.pack("<ii", width, height) + blob[26:]


def png_with_size(blob: bytes, width: int, height: int) -> bytes:
    return png_with_ihdr(blob, width=width, height=height)


SIZE_REWRITES = {".png": png_with_size, ".jpg": jpeg_with_size, ".tif": tiff_with_size, ".bmp": bmp_with_size}


def header_rewrites(family: str, blob: bytes) -> list[tuple[str, bytes, str]]:
    """(label, data, expectation) for each size claim the format's header can make: huge (over the
    pixel limit), large (under it, far more pixels than the data holds), zero and negative."""
    rewrite = SIZE_REWRITES.get(family)
    if rewrite is None or (family == ".tif" and not blob.startswith(b"II")):
        return []
    claims = {"huge": (65000, 65000), "large": (13000, 13000), "zero-width": (0, 16), "zero-height": (16, 0)}
    if family == ".bmp":
        claims["negative-width"] = (-16, 16)
    return [(label, rewrite(blob, *size), "refused") for label, size in claims.items()]


# ------------------------------------------------------------------------------------ the generator


def generate_cases(seed: int = SEED, bases_per_encoder: int = 3) -> list[Case]:
    """>= 300 malformed (and a few valid) files, the same for every run of a given seed."""
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    for round_ in range(bases_per_encoder):
        for kind, suffix, encode in ENCODERS:
            height, width = (1, 1) if round_ == 0 and kind.endswith("8") else rng.integers(2, 65, 2)
            blob = encode(rng, int(height), int(width))
            base = f"{kind}-{round_}"
            cases.append(Case(base + suffix, blob, "same", base + suffix))
            cases.extend(_mutations(rng, base, suffix, blob))
    cases.extend(_garbage(rng))
    return cases


def _mutations(rng: np.random.Generator, base: str, suffix: str, blob: bytes) -> list[Case]:
    original = base + suffix
    out = []
    for cut in sorted({int(rng.integers(1, len(blob))) for _ in range(3)}):
        out.append(Case(f"{base}-cut{cut}{suffix}", blob[:cut], "same", original))  # decodes only if nothing lost
    for flip in range(2):
        data = bytearray(blob)
        for pos in rng.integers(0, len(blob), int(rng.integers(1, 9))):
            data[pos] ^= int(rng.integers(1, 256))
        out.append(Case(f"{base}-flip{flip}{suffix}", bytes(data), "any"))
    wrong = {".png": ".jpg", ".jpg": ".png", ".jpeg": ".tif", ".tif": ".webp", ".tiff": ".bmp", ".bmp": ".png",
             ".webp": ".tiff"}[suffix]
    out.append(Case(f"{base}-misnamed{wrong}", blob, "same", original))
    family = {".jpeg": ".jpg", ".tiff": ".tif"}.get(suffix, suffix)
    for label, data, expect in header_rewrites(family, blob):
        out.append(Case(f"{base}-{label}{suffix}", data, expect))
    if suffix == ".png":
        out.append(Case(f"{base}-stream{suffix}", png_with_short_stream(blob, float(rng.uniform(0, 0.95))),
                        "refused"))
        ihdr = png_chunks(blob)[0][1]
        depth, colour = ihdr[8], ihdr[9]
        if depth == 16 or colour in (2, 6):  # same bytes read at another depth / layout: rows no longer fit
            other = {"depth": 8} if depth == 16 else {"colour": 0}
            out.append(Case(f"{base}-relabelled{suffix}", png_with_ihdr(blob, **other), "any"))
        if colour == 3:
            out.append(Case(f"{base}-short-palette{suffix}", png_with_short_palette(blob, 1), "any"))
    return out


def _garbage(rng: np.random.Generator) -> list[Case]:
    """Files that are not images at all, or only a signature, under every suffix we accept."""
    signatures = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"RIFF\x00\x00\x00\x00WEBP"]
    suffixes = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"]
    cases = [Case("empty.png", b"", "refused"), Case("one-byte.jpg", b"\xff", "refused")]
    for i in range(21):
        head = signatures[i % len(signatures)]
        tail = rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8).tobytes()
        cases.append(Case(f"random{i:02d}{suffixes[i % len(suffixes)]}", head + tail, "any"))
    return cases


# ------------------------------------------------------------------------------------ checks


def category(reason: str) -> str:
    """Group refusal reasons for the summary (the part before any detail in brackets or numbers)."""
    for pattern, label in [("over the .* MP limit", "too many pixels"), ("^truncated or corrupt", "truncated or corrupt"),
                           ("^not a recognised image format", "not a recognised image format"),
                           ("^empty file", "empty file"), ("^unsupported", "unsupported mode")]:
        if re.search(pattern, reason):
            return label
    return reason[:50]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    folder = tmp_path_factory.mktemp("fuzz") / "in"
    folder.mkdir()
    cases = generate_cases()
    for case in cases:
        (folder / case.name).write_bytes(case.data)
    return folder, cases


def test_generator_covers_what_the_issue_lists(fuzz_dir):
    """issue 13, fuzzing requirement: >= 300 files of every listed kind, reproducible from the seed."""
    _, cases = fuzz_dir
    assert len(cases) >= 300 and len({c.name for c in cases}) == len(cases)
    names = " ".join(c.name for c in cases)
    for kind in ("-cut", "-flip", "random", "-misnamed", "-huge", "-large", "-zero-width", "png-rgba16",
                 "png-palette-trns", "-short-palette", "-stream", "tiff-grey16", "webp", "bmp", "jpeg"):
        assert kind in names, kind
    assert [c.data for c in generate_cases()[:40]] == [c.data for c in cases[:40]]  # seeded: same files


def test_every_malformed_file_reads_or_fails_with_one_clear_line(fuzz_dir, tmp_path):
    """issue 13, fuzzing requirement (in-process): a correct image or one ImageError line, within 10 s each."""
    folder, cases = fuzz_dir
    out, written = tmp_path / "out", set()
    decoded: dict[str, torch.Tensor] = {}
    outcomes: Counter[str] = Counter()
    slowest = 0.0
    for case in cases:
        path = folder / case.name
        start = time.perf_counter()
        try:
            image, meta = read_image(path)
        except ImageError as err:
            message = str(err)
            assert "\n" not in message and str(path) in message, message
            assert case.expect != "same" or case.original != case.name, f"valid file refused: {message}"
            outcomes[f"refused: {category(err.reason)}"] += 1
            continue
        finally:
            slowest = max(slowest, time.perf_counter() - start)
            assert time.perf_counter() - start < SECONDS_PER_FILE, case.name
        assert case.expect != "refused", f"{case.name} should have been refused"
        _check_image(path, image, meta)
        if case.expect == "same":  # a cut that kept every pixel, or a misnamed file: the original's pixels
            assert torch.equal(image, decoded.setdefault(case.original, image)), case.name
        outcomes["decoded"] += 1
        try:
            written.add(write_image(out / case.name, image, meta).name)
        except ImageError as err:
            assert "\n" not in str(err) and case.name in str(err)
    leftovers = sorted(os.listdir(out))
    assert leftovers == sorted(written), "temp or partial files left behind"
    print(f"\nfuzz (in-process): {len(cases)} files, slowest {slowest:.2f} s")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {count:4d}  {outcome}")


def _check_image(path: Path, image: torch.Tensor, meta) -> None:
    with Image.open(path) as header:
        width, height = header.size
    sizes = {(height, width), (width, height)} if meta.exif_orientation_applied else {(height, width)}
    assert image.dtype == torch.float32 and image.shape[0] in (1, 3) and tuple(image.shape[1:]) in sizes, path.name
    assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1, path.name


def test_restore_cli_survives_a_folder_of_malformed_files(fuzz_dir, tmp_path):
    """issue 13, fuzzing requirement (CLI): exit 1, one report entry per file, one line per failure,
    every output complete and readable, nothing else in the output folder, no traceback."""
    folder, cases = fuzz_dir
    out, report_path = tmp_path / "out", tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "restorekit", "restore", str(folder), "-o", str(out), "--model", "identity",
         "--device", "cpu", "--json", str(report_path)],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    files = json.loads(report_path.read_text())["files"]
    assert sorted(Path(f["input"]).name for f in files) == sorted(c.name for c in cases)
    restored = []
    for entry in files:
        if entry["status"] == "failed":
            error = entry["error"]
            assert "\n" not in error and error.startswith(f"{entry['input']}: "), error
            assert not re.match(r"\w+(Error|Exception): ", error[len(entry["input"]) + 2:]), f"not an ImageError: {error}"
        else:
            assert entry["status"] == "restored", entry
            read_image(entry["output"])  # complete and readable
            restored.append(Path(entry["output"]).relative_to(out).as_posix())
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(restored)
    assert 0 < len(restored) < len(cases)
    print(f"\nfuzz (restore CLI): {len(files)} files, {len(restored)} restored, {len(files) - len(restored)} failed")
