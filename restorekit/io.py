"""Reading and writing images: one float32 CHW tensor in [0, 1] in, the same out.

Everything goes through Pillow, with two gaps filled by hand because Pillow (13 included)
silently truncates 16-bit colour to 8 bits: 16-bit RGB/RGBA/grey+alpha PNG and TIFF are
decoded exactly (see `_decode_16bit_colour`) and 16-bit colour PNG is encoded by pypng
(TIFF by `tifffile`, which scikit-image already depends on).

Every problem with a file surfaces as `ImageError(path, reason)`, one line a user can act on.
Writes are atomic: a half-written output never replaces a good file.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError, features

from restorekit.atomic import atomic_write
from restorekit.errors import ConfigError, ImageError, TooManyPixels

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS_ENV",
    "ImageMeta",
    "is_image_file",
    "list_images",
    "max_pixels_limit",
    "to_array",
    "read_image",
    "to_tensor",
    "to_uint8",
    "write_image",
]

# Pillow's own hard limit (2 x Image.MAX_IMAGE_PIXELS): ~179 MP, i.e. about 0.5 GiB as 8-bit RGB.
DEFAULT_MAX_PIXELS = 178_956_970
MAX_PIXELS_ENV = "RESTOREKIT_MAX_PIXELS"

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
_OUTPUT_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_GREY16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})

# Errors Pillow raises for data it cannot decode (as opposed to files it does not recognise).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)

# Pillow's limits are module globals; we change them only briefly and under this lock so that
# two threads reading at once cannot leave them in the wrong state.
_PIL_GLOBALS_LOCK = threading.RLock()  # also guards the umask read in _umask()


class _FromEnv:
    """Default for `max_pixels`: RESTOREKIT_MAX_PIXELS if set, else DEFAULT_MAX_PIXELS."""

    def __repr__(self) -> str:
        return f"${MAX_PIXELS_ENV} or {DEFAULT_MAX_PIXELS}"


FROM_ENV = _FromEnv()


@dataclass
class ImageMeta:
    """What `read_image` learned about a file, so `write_image` can give it back unchanged."""

    path: str | None
    format: str | None
    mode: str
    bit_depth: int
    channels: int
    alpha: torch.Tensor | None = None
    icc_profile: bytes | None = None
    exif_orientation_applied: bool = False
    n_frames: int = 1


# ----------------------------------------------------------------------------------- helpers


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True when the suffix is one we read and write (case-insensitive); does not touch the disk."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Image files in `folder`, sorted by (relative) name so runs are reproducible.

    Hidden files and folders (names starting with '.') are skipped: they are macOS '._*'
    resource forks or our own in-progress temp files, never inputs.
    """
    root = Path(folder)
    if not root.exists():
        raise ImageError(root, "no such folder")
    if not root.is_dir():
        raise ImageError(root, "not a folder")
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = []
    for p in candidates:
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if is_image_file(p) and p.is_file():
            found.append(p)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def max_pixels_limit(max_pixels: int | None | _FromEnv = FROM_ENV) -> int | None:
    """Resolve the pixel limit: an explicit value wins, then $RESTOREKIT_MAX_PIXELS, then the default.

    None (or 'none' / '0' in the variable) means no limit.
    """
    if isinstance(max_pixels, _FromEnv):
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_PIXELS
        if raw.lower() in {"none", "off", "unlimited", "0"}:
            return None
        try:
            value = int(raw.replace("_", "")) if raw.replace("_", "").isdigit() else int(float(raw))
        except ValueError:
            value = -1
        if value <= 0:
            raise ConfigError(
                f"{MAX_PIXELS_ENV}={raw!r}: expected a whole number of pixels (e.g. 400000000) or 'none'"
            )
        return value
    if max_pixels is None:
        return None
    if int(max_pixels) <= 0:
        raise ValueError(f"max_pixels must be positive or None, got {max_pixels!r}")
    return int(max_pixels)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC uint8/uint16 (or float in [0, 1]) array -> float32 CHW tensor in [0, 1]."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an HxW or HxWxC array, got shape {a.shape}")
    if a.dtype in (np.uint8, np.uint16):
        top = np.float32(255 if a.dtype == np.uint8 else 65535)
        # One pass (divide straight into a C-ordered CHW buffer): the data loader's hot path.
        return torch.from_numpy(np.divide(a.transpose(2, 0, 1), top, dtype=np.float32, order="C"))
    if np.issubdtype(a.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))
    raise TypeError(f"expected uint8, uint16 or float pixels, got {a.dtype}")


def to_array(image: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """Float CHW tensor in [0, 1] -> HxWxC uint8/uint16 array: NaN -> 0, clamped, *rounded*.

    The inverse of `to_tensor` (`ops.quantize` rounds values but stays float).

    Rounding (not truncation) keeps a read -> write round trip bit-exact and avoids a
    systematic -0.5 LSB bias that shows up in PSNR.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    t = _as_chw(image)
    top = 255.0 if bit_depth == 8 else 65535.0
    q = torch.nan_to_num(t, nan=0.0).clamp(0.0, 1.0).mul(top).round().to(torch.int32)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.ascontiguousarray(q.permute(1, 2, 0).numpy().astype(dtype))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Float CHW tensor in [0, 1] -> HxWxC uint8 (clamped and rounded)."""
    return to_array(image, 8)


def _as_chw(image: torch.Tensor) -> torch.Tensor:
    """Accept CHW, HW or a batch of one (1xCxHxW); detach and bring to CPU float32."""
    t = image.detach()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise ValueError(f"expected a CxHxW tensor, got shape {tuple(image.shape)}")
    return t.to("cpu", torch.float32)


def _megapixels(pixels: int, limit: int) -> tuple[str, str]:
    """Format two pixel counts as MP, truncated (not rounded up) and with enough digits to differ."""
    for digits in range(1, 7):
        scale = 10 ** (6 - digits)
        a, b = pixels // scale / 10**digits, limit // scale / 10**digits
        if a != b or digits == 6:
            return f"{a:.{digits}f}", f"{b:.{digits}f}"
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------- reading


@contextlib.contextmanager
def _unlimited_open() -> Iterator[None]:
    """Switch off Pillow's global pixel check while parsing the header: we apply our own,
    configurable limit right after, with a message that says how to raise it."""
    with _PIL_GLOBALS_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextlib.contextmanager
def _strict_load() -> Iterator[None]:
    """Decode with LOAD_TRUNCATED_IMAGES off, so a cut-off file is an error, not a grey-padded image.

    The lock (which serialises decoding) is only taken if some other code switched it on.
    """
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        yield
        return
    with _PIL_GLOBALS_LOCK:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _pixel_check_off_while_loading(img: Image.Image) -> contextlib.AbstractContextManager[None]:
    """Pillow repeats its own pixel check when it *loads* TIFF (and MPO) images: without this, a TIFF
    under our limit but over Pillow's warned of a "decompression bomb", and one over Pillow's hard
    limit was refused even after the user raised ours. Holds the lock, so TIFF loads run one at a time."""
    return _unlimited_open() if img.format in ("TIFF", "MPO") else contextlib.nullcontext()


def read_image(
    path: str | os.PathLike[str], *, max_pixels: int | None | _FromEnv = FROM_ENV
) -> tuple[torch.Tensor, ImageMeta]:
    """Read an image as a float32 CxHxW tensor in [0, 1] (C = 1 grey, 3 colour) plus its ImageMeta.

    Alpha is split off into `meta.alpha` (so models only ever see 1 or 3 channels), EXIF
    orientation is applied (so the pixels match what every viewer shows), and the size is
    checked against `max_pixels` *before* decoding (default: $RESTOREKIT_MAX_PIXELS or
    178,956,970; None = no limit). Any unreadable file raises ImageError.
    """
    p = Path(path)
    limit = max_pixels_limit(max_pixels)
    try:
        fh = open(p, "rb")
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageError(path, "is a directory, not an image file") from None
    except PermissionError:
        if p.is_dir():
            raise ImageError(path, "is a directory, not an image file") from None
        raise ImageError(path, "permission denied") from None
    except OSError as exc:
        raise ImageError(path, f"cannot open ({exc.strerror or exc})") from None
    with fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise ImageError(path, "empty file (0 bytes)")
        try:
            return _read_open_file(path, fh, limit)
        except ImageError:
            raise
        except UnidentifiedImageError:
            raise ImageError(path, "not a recognised image format") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(
                path, f"too many pixels ({exc}); raise with max_pixels / {MAX_PIXELS_ENV}"
            ) from None
        except _DECODE_ERRORS as exc:
            raise ImageError(path, f"truncated or corrupt image data ({exc})") from None


def _read_open_file(
    path: str | os.PathLike[str], fh: io.BufferedReader, limit: int | None
) -> tuple[torch.Tensor, ImageMeta]:
    with _unlimited_open():
        img = Image.open(fh)
    with img:
        width, height = img.size
        if limit is not None and width * height > limit:
            got, cap = _megapixels(width * height, limit)
            raise TooManyPixels(
                path, width, height, limit,
                f"image is {width}x{height} = {got} MP, over the {cap} MP limit "
                f"(raise with max_pixels / {MAX_PIXELS_ENV})",
            )
        png = _png_data(fh) if img.format == "PNG" else None
        if png is not None:
            _check_png_size(path, png)
        elif img.format in ("JPEG", "MPO"):
            _check_jpeg_size(path, fh)
        n_frames = int(getattr(img, "n_frames", 1) or 1)
        if n_frames > 1:
            warnings.warn(f"{path}: animated image with {n_frames} frames; using the first frame", stacklevel=3)
            img.seek(0)
        fmt, mode = img.format, img.mode
        icc = img.info.get("icc_profile") or None

        low_rawmodes = _low_byte_rawmodes(path, img)
        if low_rawmodes is not None:
            with _strict_load(), _pixel_check_off_while_loading(img):
                img.load()
            if png is not None:
                _check_png_complete(path, fh, png, img)
            hwc, bit_depth = _decode_16bit_colour(img, fh, low_rawmodes), 16
            orientation = _exif_orientation(img)
            hwc = _apply_orientation(hwc, orientation)
        else:
            with _strict_load(), _pixel_check_off_while_loading(img):
                img.load()
            if png is not None:
                _check_png_complete(path, fh, png, img)
            orientation = _exif_orientation(img)
            if orientation != 1:
                img = ImageOps.exif_transpose(img)
            hwc, bit_depth, icc = _pil_to_array(path, img, icc)

    channels = 1 if hwc.shape[2] in (1, 2) else 3
    tensor = to_tensor(hwc)
    alpha = tensor[channels:].clone() if tensor.shape[0] > channels else None
    meta = ImageMeta(
        path=str(path),
        format=fmt,
        mode=mode,
        bit_depth=bit_depth,
        channels=channels,
        alpha=alpha,
        icc_profile=icc,
        exif_orientation_applied=orientation != 1,
        n_frames=n_frames,
    )
    return tensor[:channels].contiguous(), meta


def _exif_orientation(img: Image.Image) -> int:
    """EXIF orientation 1..8 (1 = as stored); a broken EXIF block is treated as 1, not an error."""
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - EXIF parsing errors must not make a good image unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Numpy twin of ImageOps.exif_transpose for HxWxC arrays Pillow cannot hold (16-bit colour)."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = np.rot90(a, -1)
    elif orientation == 7:
        a = a[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        a = np.rot90(a, 1)
    return np.ascontiguousarray(a)


def _pil_to_array(
    path: str | os.PathLike[str], img: Image.Image, icc: bytes | None
) -> tuple[np.ndarray, int, bytes | None]:
    """Normalise any Pillow mode to HxWxC (C = 1, 2, 3 or 4 with alpha last) uint8/uint16."""
    mode = img.mode
    has_trns = img.info.get("transparency") is not None
    if mode in _GREY16_MODES:
        return np.asarray(img).astype(np.uint16)[:, :, None], 16, icc
    if mode == "I":  # 32-bit int; older Pillow and some TIFFs use it for 16-bit grey
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16)[:, :, None], 16, icc
    if mode == "F":
        raise ImageError(path, "32-bit floating-point images are not supported (save as 8/16-bit)")
    if mode == "CMYK":
        img, icc = _cmyk_to_rgb(img, icc)
        return np.asarray(img), 8, icc
    try:
        if mode == "1":
            img = img.convert("L")
        elif mode == "L" and has_trns:
            img = img.convert("LA")
        elif mode in ("LA", "La"):
            img = img.convert("LA")
        elif mode in ("P", "PA"):
            img = img.convert("RGBA" if mode == "PA" or has_trns else "RGB")
        elif mode == "RGB" and has_trns:
            img = img.convert("RGBA")
        elif mode in ("RGBA", "RGBa"):
            img = img.convert("RGBA")
        elif mode != "L" and mode != "RGB":
            img = img.convert("RGB")  # RGBX, YCbCr, HSV, LAB ...
    except ValueError:
        raise ImageError(path, f"unsupported image mode {mode!r}") from None
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ImageError(path, f"unsupported image mode {mode!r}")
    return (a[:, :, None] if a.ndim == 2 else a), 8, icc


def _cmyk_to_rgb(img: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK -> sRGB through the embedded profile when there is one, else Pillow's plain formula.

    The CMYK profile no longer describes the pixels afterwards, so it is dropped.
    """
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB"), None
        except Exception:  # noqa: BLE001 - a bad profile should not stop the read
            pass
    return img.convert("RGB"), None


# Pillow decodes 16-bit colour by keeping the high byte of each sample. Decoding the same data
# a second time with the opposite byte order yields the low bytes, so Pillow's own (fast, filter-
# and interlace-aware) decoders give us the exact 16-bit values without a second PNG/TIFF decoder.
_SWAPPED_RAWMODE = {
    "RGB;16B": "RGB;16L",
    "RGB;16L": "RGB;16B",
    "RGBA;16B": "RGBA;16L",
    "RGBA;16L": "RGBA;16B",
    "RGBX;16B": "RGBX;16L",
    "RGBX;16L": "RGBX;16B",
    "RGB;16N": "RGB;16B" if sys.byteorder == "little" else "RGB;16L",
    "RGBA;16N": "RGBA;16B" if sys.byteorder == "little" else "RGBA;16L",
}


def _tile_rawmode(tile: tuple) -> str | None:
    args = tile[3]
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _low_byte_rawmodes(path: str | os.PathLike[str], img: Image.Image) -> list[str] | None:
    """For a 16-bit colour image Pillow would truncate, the rawmodes that decode its low bytes."""
    if img.mode in _GREY16_MODES or img.mode in ("I", "F") or not img.tile:
        return None
    rawmodes = [_tile_rawmode(t) for t in img.tile]
    if not any(r and ";16" in r for r in rawmodes):
        return None
    if img.format == "PNG" and rawmodes == ["LA;16B"]:
        return ["RGBA"]  # grey+alpha: a plain byte copy into RGBA gives (Lhi, Llo, Ahi, Alo)
    if all(r in _SWAPPED_RAWMODE for r in rawmodes):
        return [_SWAPPED_RAWMODE[r] for r in rawmodes]
    raise ImageError(
        path,
        f"16-bit colour layout {rawmodes[0]!r} cannot be decoded without losing the low 8 bits; "
        "save it as 16-bit RGB/RGBA PNG or TIFF",
    )


def _decode_16bit_colour(img: Image.Image, fh: io.BufferedReader, low_rawmodes: list[str]) -> np.ndarray:
    """Exact HxWxC uint16 for a 16-bit colour PNG/TIFF (`img` already loaded = high bytes)."""
    high = np.asarray(img)
    fh.seek(0)
    with _unlimited_open():
        other = Image.open(fh)
    with other:
        if getattr(other, "n_frames", 1) > 1:
            other.seek(0)
        other.tile = [_with_rawmode(t, r) for t, r in zip(other.tile, low_rawmodes)]
        with _strict_load(), _pixel_check_off_while_loading(other):
            other.load()
        low = np.asarray(other)
    if low_rawmodes == ["RGBA"]:  # grey+alpha byte copy
        grey = high[:, :, 0].astype(np.uint16) << 8 | low[:, :, 1]
        alpha = low[:, :, 2].astype(np.uint16) << 8 | low[:, :, 3]
        return np.stack([grey, alpha], axis=2)
    out = high.astype(np.uint16) << 8 | low.astype(np.uint16)
    return out[:, :, :3] if img.mode == "RGB" else out


def _with_rawmode(tile: tuple, rawmode: str) -> tuple:
    """The same tile, decoded with another rawmode (tiles are NamedTuples in Pillow >= 11)."""
    args = tile[3]
    new_args = rawmode if isinstance(args, str) else (rawmode, *args[1:])
    return tile._replace(args=new_args) if hasattr(tile, "_replace") else (*tile[:3], new_args)


# ---------------------------------------------------------------------- complete image data
# Pillow fills missing pixels instead of failing when a PNG's zlib stream ends (cleanly) before the
# last row, or when a JPEG's scan data stops at an early end marker (libjpeg only warns). Such files
# are refused here: cheaply from the header before decoding (a few hundred bytes cannot hold a
# 6000x6600 image, and decoding one would allocate gigabytes), and exactly for PNG after decoding.
# A JPEG cut short but still big enough for its header's size cannot be told apart without a full
# decode and still reads padded. Every check is a proven bound or an exact count: no valid image
# is ever refused. TIFF, BMP and WebP need none (Pillow/libtiff/libwebp refuse missing data).

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type: grey, RGB, palette, grey+alpha, RGBA
# Adam7 passes as (x0, y0, dx, dy): PNG spec section 8.2.
_ADAM7_PASSES = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
# Deflate's densest code is a 258-byte match in 2 bits (1-bit length and distance codes), so one
# compressed byte never inflates to more than 4 x 258 = 1032 bytes.
_DEFLATE_MAX_RATIO = 1032
_INFLATE_STEP = 1 << 20  # inflate in 1 MiB pieces: memory stays flat whatever the file claims


@dataclass(frozen=True)
class _PngData:
    """What a PNG's chunk headers say: the image geometry and where its IDAT data lies."""

    width: int
    height: int
    channels: int
    bit_depth: int
    interlaced: bool
    idat: tuple[tuple[int, int], ...]  # (file offset, length) of the first run of IDAT chunks

    @property
    def raw_size(self) -> int:
        return _png_raw_size(self.width, self.height, self.channels, self.bit_depth, self.interlaced)

    @property
    def compressed_size(self) -> int:
        return sum(length for _, length in self.idat)


def _png_raw_size(width: int, height: int, channels: int, bit_depth: int, interlaced: bool) -> int:
    """Bytes the IDAT zlib stream must inflate to: every (sub-)image row plus its filter-type byte."""

    def image_bytes(w: int, h: int) -> int:
        return 0 if w <= 0 or h <= 0 else h * (1 + (w * channels * bit_depth + 7) // 8)

    if not interlaced:
        return image_bytes(width, height)
    return sum(
        image_bytes((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy) for x0, y0, dx, dy in _ADAM7_PASSES
    )


def _png_data(fh: BinaryIO) -> _PngData | None:
    """Walk the chunk headers (seeking past the bodies); None when the file does not parse as a
    PNG we can reason about (Pillow then reports the problem itself)."""
    start = fh.tell()
    try:
        fh.seek(0)
        if fh.read(8) != _PNG_SIGNATURE:
            return None
        length, kind = struct.unpack(">I4s", fh.read(8))
        body = fh.read(13)
        if kind != b"IHDR" or length != 13 or len(body) != 13:
            return None
        width, height, bit_depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
        if colour_type not in _PNG_CHANNELS:
            return None
        return _PngData(width, height, _PNG_CHANNELS[colour_type], bit_depth, interlace == 1, _idat_run(fh, 33))
    except (OSError, struct.error):
        return None
    finally:
        fh.seek(start)


def _idat_run(fh: BinaryIO, position: int) -> tuple[tuple[int, int], ...]:
    """(offset, length) of the consecutive IDAT chunks Pillow decodes, clipped to the file's end."""
    size = os.fstat(fh.fileno()).st_size
    run: list[tuple[int, int]] = []
    while position + 8 <= size:
        fh.seek(position)
        length, kind = struct.unpack(">I4s", fh.read(8))
        if kind == b"IDAT":
            run.append((position + 8, min(length, size - position - 8)))
        elif run or kind == b"IEND":
            break
        position += 12 + length
    return tuple(run)


def _check_png_size(path: str | os.PathLike[str], png: _PngData) -> None:
    """Before decoding: refuse IDAT data too small to inflate to the declared image."""
    available = png.compressed_size * _DEFLATE_MAX_RATIO
    if png.raw_size > available:
        raise ImageError(
            path,
            f"truncated or corrupt image data (a {png.width}x{png.height} PNG needs {png.raw_size:,} bytes of "
            f"pixel data; its {png.compressed_size:,} compressed bytes hold at most {available:,})",
        )


def _check_png_complete(path: str | os.PathLike[str], fh: BinaryIO, png: _PngData, img: Image.Image) -> None:
    """After decoding: refuse a zlib stream that ended before the last row (Pillow keeps black rows).

    Fast path: rows decode in order into zeroed memory, so a non-interlaced image whose last row
    holds any non-zero byte was decoded to the end. Otherwise count the inflated bytes exactly.
    """
    if not png.interlaced and any(img.crop((0, img.height - 1, img.width, img.height)).tobytes()):
        return
    produced = _inflated_size(fh, png.idat, png.raw_size)
    if produced < png.raw_size:
        raise ImageError(
            path,
            f"truncated or corrupt image data (PNG image data ends after {produced:,} of "
            f"{png.raw_size:,} bytes)",
        )


def _inflated_size(fh: BinaryIO, chunks: tuple[tuple[int, int], ...], needed: int) -> int:
    """Bytes the zlib stream in `chunks` inflates to, counted in bounded memory, stopping at `needed`."""
    inflater = zlib.decompressobj()
    produced = 0
    for offset, length in chunks:
        fh.seek(offset)
        data = fh.read(length)
        while data and not inflater.eof:
            produced += len(inflater.decompress(data, _INFLATE_STEP))
            if produced >= needed:
                return produced
            data = inflater.unconsumed_tail
    return produced


# JPEG: every 8x8 block costs at least 2 bits in a sequential Huffman scan (a DC code and an AC
# code, each >= 1 bit) and at least 1 bit in a progressive image's first DC scan. Arithmetic-coded
# and lossless JPEGs have no such bound and are not checked.
_JPEG_BITS_PER_BLOCK = {0xC0: 2, 0xC1: 2, 0xC2: 1}
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # C4 DHT, C8 JPG, CC DAC
_JPEG_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn, TEM: no length field


@dataclass(frozen=True)
class _JpegFrame:
    """The SOF segment: coding process, size and each component's (horizontal, vertical) sampling."""

    marker: int
    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]


def _jpeg_min_size(frame: _JpegFrame) -> int:
    """A lower bound on the file size any JPEG with this frame header has (0 = no bound known)."""
    bits = _JPEG_BITS_PER_BLOCK.get(frame.marker)
    if bits is None or not frame.sampling or frame.width == 0 or frame.height == 0:
        return 0
    h_max = max(h for h, _ in frame.sampling)
    v_max = max(v for _, v in frame.sampling)
    if h_max == 0 or v_max == 0:
        return 0
    blocks = 0
    for h, v in frame.sampling:
        # component size (T.81 A.1.1), then whole 8x8 blocks
        columns = _ceil_div(_ceil_div(frame.width * h, h_max), 8)
        rows = _ceil_div(_ceil_div(frame.height * v, v_max), 8)
        blocks += columns * rows
    return blocks * bits // 8


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _jpeg_frame(fh: BinaryIO) -> _JpegFrame | None:
    """Read marker segments up to the SOF header; None if there is none before the scan data."""
    start = fh.tell()
    try:
        fh.seek(0)
        if fh.read(2) != b"\xff\xd8":
            return None
        while True:
            byte = fh.read(1)
            if byte != b"\xff":
                return None
            marker = fh.read(1)
            while marker == b"\xff":  # fill bytes
                marker = fh.read(1)
            if not marker:
                return None
            code = marker[0]
            if code in _JPEG_STANDALONE_MARKERS:
                continue
            if code in (0xD9, 0xDA):  # EOI or SOS before any frame header
                return None
            (length,) = struct.unpack(">H", fh.read(2))
            if code in _JPEG_SOF_MARKERS:
                body = fh.read(length - 2)
                _, height, width, count = struct.unpack(">BHHB", body[:6])
                sampling = tuple((body[7 + 3 * i] >> 4, body[7 + 3 * i] & 15) for i in range(count))
                return _JpegFrame(code, width, height, sampling)
            fh.seek(length - 2, os.SEEK_CUR)
    except (OSError, struct.error, IndexError):
        return None
    finally:
        fh.seek(start)


def _check_jpeg_size(path: str | os.PathLike[str], fh: BinaryIO) -> None:
    """Before decoding: refuse a JPEG too small to hold the image its header declares."""
    frame = _jpeg_frame(fh)
    if frame is None:
        return
    needed, size = _jpeg_min_size(frame), os.fstat(fh.fileno()).st_size
    if needed > size:
        raise ImageError(
            path,
            f"truncated or corrupt image data (a {frame.width}x{frame.height} JPEG needs at least "
            f"{needed:,} bytes of scan data; the file has {size:,})",
        )


# ----------------------------------------------------------------------------------- writing


def write_image(
    path: str | os.PathLike[str],
    image: torch.Tensor | np.ndarray,
    meta: ImageMeta | None = None,
    *,
    bit_depth: int | None = None,
    overwrite: bool = False,
    quality: int = 95,
) -> Path:
    """Write `image` atomically to `path` (format from the suffix) and return the path.

    `image` is a float CxHxW tensor in [0, 1] or an HxW[xC] uint8/uint16/float array; 2 or 4
    channels mean the last one is alpha. Values are clamped and rounded to `bit_depth`
    (default: meta.bit_depth, else 16 for uint16 arrays, else 8; 16-bit only for PNG/TIFF, an
    inherited 16 falls back to 8 elsewhere). meta.alpha (resized if the image size changed) and
    meta.icc_profile are re-attached. Refuses to replace an existing file unless overwrite=True.
    """
    p = Path(path)
    fmt = _OUTPUT_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ImageError(
            path,
            f"unsupported output format {p.suffix or '(no suffix)'!r} "
            f"(use one of {', '.join(sorted(_OUTPUT_FORMATS))})",
        )
    depth = _output_bit_depth(path, fmt, image, meta, bit_depth)
    pixels, alpha = _split_alpha(_to_hwc(image, depth))
    if alpha is None and meta is not None and meta.alpha is not None:
        alpha = _resized_alpha(meta.alpha, pixels.shape[0], pixels.shape[1], depth)
    icc = meta.icc_profile if meta is not None else None
    if icc and not _icc_matches(icc, pixels.shape[2]):
        icc = None
    if fmt == "JPEG" and alpha is not None:
        warnings.warn(f"{path}: JPEG cannot store an alpha channel; writing it without", stacklevel=2)
        alpha = None

    if p.is_dir():
        raise ImageError(path, "is a directory")
    if p.exists() and not overwrite:
        raise ImageError(path, "already exists (pass overwrite=True / --overwrite to replace it)")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(path, f"cannot create folder {p.parent} ({exc.strerror or exc})") from None

    try:
        atomic_write(p, lambda fh: _encode(fh, fmt, pixels, alpha, depth, icc, quality), overwrite=overwrite)
    except FileExistsError:
        raise ImageError(path, "already exists (pass overwrite=True / --overwrite to replace it)") from None
    except ImageError:
        raise
    except (OSError, ValueError, struct.error, zlib.error) as exc:
        raise ImageError(path, f"could not write ({exc})") from None
    return p


def _output_bit_depth(
    path: str | os.PathLike[str],
    fmt: str,
    image: torch.Tensor | np.ndarray,
    meta: ImageMeta | None,
    bit_depth: int | None,
) -> int:
    if bit_depth is not None:
        if bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
        if bit_depth == 16 and fmt not in _SIXTEEN_BIT_FORMATS:
            raise ImageError(path, f"{fmt} cannot store 16-bit images (use .png or .tif)")
        return bit_depth
    if meta is not None:
        inherited = meta.bit_depth
    elif isinstance(image, np.ndarray) and image.dtype == np.uint16:
        inherited = 16
    else:
        inherited = 8
    return inherited if fmt in _SIXTEEN_BIT_FORMATS else 8


def _to_hwc(image: torch.Tensor | np.ndarray, depth: int) -> np.ndarray:
    """Any accepted input -> HxWxC uint8/uint16 at `depth`."""
    if isinstance(image, torch.Tensor):
        out = to_array(image, depth)
    else:
        a = np.asarray(image)
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3:
            raise ValueError(f"expected an HxW or HxWxC array, got shape {a.shape}")
        if a.dtype == np.uint8:
            out = a if depth == 8 else a.astype(np.uint16) * 257
        elif a.dtype == np.uint16:
            out = a if depth == 16 else np.rint(a / 257.0).astype(np.uint8)
        elif np.issubdtype(a.dtype, np.floating):
            out = to_array(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))), depth)
        else:
            raise TypeError(f"expected uint8, uint16 or float pixels, got {a.dtype}")
    if out.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected 1-4 channels, got {out.shape[2]}")
    return np.ascontiguousarray(out)


def _split_alpha(hwc: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if hwc.shape[2] in (2, 4):
        return hwc[:, :, :-1], hwc[:, :, -1]
    return hwc, None


def _resized_alpha(alpha: torch.Tensor, height: int, width: int, depth: int) -> np.ndarray:
    """meta.alpha at the output size: untouched when sizes match, else MATLAB bicubic (antialiased)."""
    from restorekit.ops import imresize

    a = _as_chw(alpha)[:1]
    if tuple(a.shape[1:]) != (height, width):
        a = imresize(a.float(), size=(height, width))
    return to_array(a, depth)[:, :, 0]


def _icc_matches(icc: bytes, channels: int) -> bool:
    """Attach a profile only if its colour space fits the pixels (a GRAY profile on RGB is invalid)."""
    space = icc[16:20] if len(icc) >= 20 else b""
    return space == (b"GRAY" if channels == 1 else b"RGB ")


def _encode(
    fh: BinaryIO,
    fmt: str,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    depth: int,
    icc: bytes | None,
    quality: int,
) -> None:
    """Encode into the open temp file."""
    channels = pixels.shape[2]
    full = pixels if alpha is None else np.concatenate([pixels, alpha[:, :, None]], axis=2)
    if depth == 16:
        if channels == 1 and alpha is None:
            params = {"icc_profile": icc} if icc else {}
            Image.fromarray(np.ascontiguousarray(pixels[:, :, 0], dtype=np.uint16)).save(fh, format=fmt, **params)
        elif fmt == "PNG":
            _write_png16(fh, full, icc)
        else:
            _write_tiff16(fh, full, has_alpha=alpha is not None, icc=icc)
        return

    img = Image.fromarray(np.ascontiguousarray(full[:, :, 0]) if full.shape[2] == 1 else full)
    if img.mode == "LA" and fmt in ("BMP", "WEBP"):
        img = img.convert("RGBA")  # neither stores grey+alpha
    params: dict = {}
    if icc and fmt != "BMP":
        params["icc_profile"] = icc
    if fmt == "JPEG":
        # 4:4:4 chroma: restoration outputs are compared pixel by pixel, 4:2:0 would blur colour.
        params.update(quality=quality, subsampling=0)
    elif fmt == "WEBP":
        params.update(quality=quality, lossless=quality >= 100)
    elif fmt == "TIFF" and features.check("libtiff"):
        params["compression"] = "tiff_deflate"
    img.save(fh, format=fmt, **params)


def _write_png16(fh: BinaryIO, hwc: np.ndarray, icc: bytes | None) -> None:
    """16-bit PNG through pypng (Pillow cannot write 16-bit colour); an ICC profile goes in as iCCP."""
    import png

    height, width, channels = hwc.shape
    writer = png.Writer(width, height, greyscale=channels in (1, 2), alpha=channels in (2, 4), bitdepth=16,
                        compression=6)
    rows = hwc.reshape(height, width * channels).astype(np.uint16)
    if not icc:
        writer.write(fh, rows)
        return
    encoded = io.BytesIO()
    writer.write(encoded, rows)
    chunks = list(png.Reader(bytes=encoded.getvalue()).chunks())
    chunks.insert(1, (b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))  # right after IHDR
    png.write_chunks(fh, chunks)


def _write_tiff16(fh: BinaryIO, hwc: np.ndarray, *, has_alpha: bool, icc: bytes | None) -> None:
    """16-bit colour TIFF via tifffile (Pillow cannot write it).

    Pillow cannot *read* 16-bit grey+alpha TIFF, so that case is stored as RGBA (grey repeated).
    """
    import tifffile

    if hwc.shape[2] == 2:
        hwc = np.concatenate([hwc[:, :, :1]] * 3 + [hwc[:, :, 1:]], axis=2)
    kwargs: dict = {"photometric": "rgb", "compression": "zlib"}
    if has_alpha:
        kwargs["extrasamples"] = ["unassalpha"]
    if icc:
        kwargs["iccprofile"] = icc
    tifffile.imwrite(fh, hwc, **kwargs)
