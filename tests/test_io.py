"""restorekit.io: exact round trips, every mode we promise, and a clear ImageError for bad files."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps
from skimage import data as skdata

from restorekit import io as rio
from restorekit.errors import ConfigError, ImageError
from restorekit.io import (
    ImageMeta,
    is_image_file,
    list_images,
    read_image,
    to_array,
    to_tensor,
    to_uint8,
    write_image,
)

RNG = np.random.default_rng(1234)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[100:196, 150:278])  # 96x128x3 uint8


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return np.ascontiguousarray(skdata.camera()[200:280, 200:300])  # 80x100 uint8


def as_uint(t: torch.Tensor, bits: int) -> np.ndarray:
    """CHW float -> HWC uint, exactly (fails loudly if the floats are not on the integer grid)."""
    top = 255 if bits == 8 else 65535
    scaled = t.permute(1, 2, 0).double().numpy() * top
    assert np.abs(scaled - np.rint(scaled)).max() < 0.02  # float32 holds k/65535 to ~0.004 LSB
    return np.rint(scaled).astype(np.uint8 if bits == 8 else np.uint16)


def png16_bytes(a: np.ndarray) -> bytes:
    """Independent 16-bit PNG encoder (filter 0), so reading is not only tested against our writer."""
    h, w = a.shape[:2]
    c = 1 if a.ndim == 2 else a.shape[2]
    rows = np.concatenate([np.zeros((h, 1), np.uint8), a.astype(">u2").reshape(h, -1).view(np.uint8)], 1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows.tobytes())) + chunk(b"IEND", b"")
    )


def png16_decode(blob: bytes) -> np.ndarray:
    """Independent decoder for the 16-bit PNGs our writer makes (filters None/Up only)."""
    pos, idat, ihdr = 8, b"", None
    while pos < len(blob):
        (n,) = struct.unpack(">I", blob[pos : pos + 4])
        kind, body = blob[pos + 4 : pos + 8], blob[pos + 8 : pos + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack(">I", blob[pos + 8 + n : pos + 12 + n])[0]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, colour_type = ihdr[:4]
    assert depth == 16
    c = {0: 1, 4: 2, 2: 3, 6: 4}[colour_type]
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * c * 2)
    raw = rows[:, 1:].copy()
    for y in range(h):
        assert rows[y, 0] in (0, 2)
        if rows[y, 0] == 2 and y > 0:
            raw[y] = raw[y] + raw[y - 1]  # uint8 wraps: undo Up
    return raw.view(">u2").reshape(h, w, c).astype(np.uint16)


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("which", ["rgb", "grey"])
def test_8bit_png_round_trip_is_bit_exact(tmp_path, astronaut, camera, which):
    src = astronaut if which == "rgb" else camera
    Image.fromarray(src).save(tmp_path / "in.png")
    t, meta = read_image(tmp_path / "in.png")
    assert t.dtype == torch.float32 and t.shape == (3 if which == "rgb" else 1, *src.shape[:2])
    assert 0.0 <= t.min() and t.max() <= 1.0
    assert (meta.format, meta.bit_depth, meta.channels, meta.alpha) == ("PNG", 8, t.shape[0], None)
    assert np.array_equal(as_uint(t, 8).squeeze(-1) if which == "grey" else as_uint(t, 8), src)

    out = write_image(tmp_path / "out.png", t, meta)
    assert out == tmp_path / "out.png"
    assert np.array_equal(np.asarray(Image.open(out)), src)


def test_16bit_grey_png_round_trip_is_bit_exact(tmp_path):
    a = RNG.integers(0, 65536, (33, 47), dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "g16.png")
    t, meta = read_image(tmp_path / "g16.png")
    assert (meta.bit_depth, meta.channels, t.shape) == (16, 1, (1, 33, 47))
    assert np.array_equal(as_uint(t, 16)[:, :, 0], a)

    write_image(tmp_path / "out.png", t, meta)
    back = Image.open(tmp_path / "out.png")
    assert back.mode.startswith("I;16") and np.array_equal(np.asarray(back), a)


@pytest.mark.parametrize("channels", [3, 4, 2])
def test_16bit_colour_png_round_trip_is_bit_exact(tmp_path, channels):
    # Pillow alone would keep only the high byte of each sample; the low bytes must survive too.
    a = RNG.integers(0, 65536, (21, 34, channels), dtype=np.uint16)
    (tmp_path / "in.png").write_bytes(png16_bytes(a))
    t, meta = read_image(tmp_path / "in.png")
    colour = 1 if channels == 2 else 3
    assert (meta.bit_depth, meta.channels, t.shape[0]) == (16, colour, colour)
    assert np.array_equal(as_uint(t, 16), a[:, :, :colour])
    if channels in (2, 4):
        assert np.array_equal(as_uint(meta.alpha, 16)[:, :, 0], a[:, :, -1])
    else:
        assert meta.alpha is None

    out = write_image(tmp_path / "out.png", t, meta)
    assert np.array_equal(png16_decode(out.read_bytes()), a)  # checked by an independent decoder
    t2, meta2 = read_image(out)
    assert torch.equal(t2, t) and meta2.bit_depth == 16


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_16bit_rgb_tiff_read_and_write_exact(tmp_path, compression):
    tifffile = pytest.importorskip("tifffile")
    a = RNG.integers(0, 65536, (17, 23, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", a, photometric="rgb", compression=compression)
    t, meta = read_image(tmp_path / "in.tif")
    assert meta.bit_depth == 16 and meta.format == "TIFF"
    assert np.array_equal(as_uint(t, 16), a)
    write_image(tmp_path / "out.tiff", t, meta)
    assert np.array_equal(tifffile.imread(tmp_path / "out.tiff"), a)


def test_numpy_uint16_input_defaults_to_16_bit(tmp_path):
    a = RNG.integers(0, 65536, (8, 9, 3), dtype=np.uint16)
    write_image(tmp_path / "a.png", a)
    t, meta = read_image(tmp_path / "a.png")
    assert meta.bit_depth == 16 and np.array_equal(as_uint(t, 16), a)


def test_rgba_alpha_is_carried_through_untouched(tmp_path, astronaut):
    alpha = RNG.integers(0, 256, astronaut.shape[:2], dtype=np.uint8)
    rgba = np.dstack([astronaut, alpha])
    Image.fromarray(rgba).save(tmp_path / "in.png")
    t, meta = read_image(tmp_path / "in.png")
    assert t.shape[0] == 3 and meta.channels == 3 and meta.mode == "RGBA"
    assert meta.alpha.shape == (1, *alpha.shape) and meta.alpha.dtype == torch.float32
    assert np.array_equal(as_uint(meta.alpha, 8)[:, :, 0], alpha)

    write_image(tmp_path / "out.png", t, meta)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), rgba)


def test_alpha_is_resized_when_the_image_size_changes(tmp_path):
    alpha = np.zeros((16, 16), np.uint8)
    alpha[:, 8:] = 255
    Image.fromarray(np.dstack([np.full((16, 16, 3), 90, np.uint8), alpha])).save(tmp_path / "in.png")
    t, meta = read_image(tmp_path / "in.png")
    big = torch.nn.functional.interpolate(t[None], scale_factor=2, mode="nearest")[0]
    write_image(tmp_path / "out.png", big, meta)
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (32, 32, 4)
    assert (out[:, :12, 3] == 0).all() and (out[:, 20:, 3] == 255).all()  # edge kept where it was


def test_palette_image_becomes_rgb_or_rgba(tmp_path, astronaut):
    p_img = Image.fromarray(astronaut).quantize(16)
    p_img.save(tmp_path / "p.png")
    t, meta = read_image(tmp_path / "p.png")
    assert meta.mode == "P" and meta.alpha is None and t.shape[0] == 3
    assert np.array_equal(as_uint(t, 8), np.asarray(p_img.convert("RGB")))

    p_img.save(tmp_path / "pt.png", transparency=3)
    t, meta = read_image(tmp_path / "pt.png")
    index = np.asarray(p_img)
    assert meta.alpha is not None and t.shape[0] == 3
    assert np.array_equal(as_uint(meta.alpha, 8)[:, :, 0] == 0, index == 3)


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = Image.fromarray(RNG.integers(0, 256, (12, 10, 4), dtype=np.uint8), mode="CMYK")
    cmyk.save(tmp_path / "c.tif")
    t, meta = read_image(tmp_path / "c.tif")
    assert meta.mode == "CMYK" and meta.channels == 3 and t.shape == (3, 12, 10)
    assert np.array_equal(as_uint(t, 8), np.asarray(cmyk.convert("RGB")))


def test_la_gives_grey_plus_alpha(tmp_path, camera):
    alpha = RNG.integers(0, 256, camera.shape, dtype=np.uint8)
    Image.fromarray(np.dstack([camera, alpha])).save(tmp_path / "la.png")
    t, meta = read_image(tmp_path / "la.png")
    assert t.shape == (1, *camera.shape) and meta.channels == 1
    assert np.array_equal(as_uint(t, 8)[:, :, 0], camera)
    assert np.array_equal(as_uint(meta.alpha, 8)[:, :, 0], alpha)


def test_bilevel_reads_as_zero_or_one(tmp_path):
    bits = RNG.integers(0, 2, (15, 22)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    t, meta = read_image(tmp_path / "b.png")
    assert t.shape == (1, 15, 22) and meta.mode == "1"
    assert torch.equal(t[0], torch.from_numpy(bits).float())


@pytest.mark.parametrize(
    ("suffix", "fmt", "lossless"),
    [(".jpg", "JPEG", False), (".bmp", "BMP", True), (".tiff", "TIFF", True), (".webp", "WEBP", True)],
)
def test_reads_common_formats(tmp_path, astronaut, suffix, fmt, lossless):
    extra = {"lossless": True} if fmt == "WEBP" else {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(astronaut).save(tmp_path / f"a{suffix}", **extra)
    t, meta = read_image(tmp_path / f"a{suffix}")
    assert meta.format == fmt and t.shape == (3, *astronaut.shape[:2])
    got = np.rint(t.permute(1, 2, 0).numpy() * 255)
    if lossless:
        assert np.array_equal(got, astronaut)
    else:
        assert np.abs(got - astronaut).mean() < 3


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".bmp", ".tif"])
def test_writes_common_formats(tmp_path, astronaut, suffix):
    out = write_image(tmp_path / f"o{suffix}", to_tensor(astronaut), quality=100)
    back = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert np.abs(back - astronaut).mean() < (2 if suffix == ".jpg" else 1e-9)


def test_exif_orientation_is_applied(tmp_path):
    a = RNG.integers(0, 256, (20, 40, 3), dtype=np.uint8)  # stored landscape, 40 wide
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    t, meta = read_image(tmp_path / "rot.jpg")
    assert t.shape == (3, 40, 20) and meta.exif_orientation_applied
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "rot.jpg")))
    assert np.array_equal(as_uint(t, 8), expected)

    img.save(tmp_path / "plain.jpg")
    assert read_image(tmp_path / "plain.jpg")[1].exif_orientation_applied is False


@pytest.mark.parametrize("orientation", range(1, 9))
def test_numpy_orientation_matches_pillow(orientation):
    # The 16-bit colour path rotates in numpy; it must agree with ImageOps.exif_transpose.
    a = RNG.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(buf)))
    assert np.array_equal(rio._apply_orientation(a, orientation), expected)


def test_icc_profile_is_carried_through(tmp_path, astronaut):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(astronaut).save(tmp_path / "in.png", icc_profile=icc)
    t, meta = read_image(tmp_path / "in.png")
    assert meta.icc_profile == icc
    write_image(tmp_path / "out.png", t, meta)
    assert Image.open(tmp_path / "out.png").info.get("icc_profile") == icc
    # an RGB profile must not be stamped on a greyscale output
    write_image(tmp_path / "grey.png", t[:1], meta)
    assert not Image.open(tmp_path / "grey.png").info.get("icc_profile")


# ------------------------------------------------------------------------- bad input


def _truncated(src: Path, dst: Path) -> Path:
    blob = src.read_bytes()
    dst.write_bytes(blob[: len(blob) // 2])
    return dst


def make_bad(kind: str, tmp_path: Path, astronaut: np.ndarray) -> tuple[Path, str]:
    if kind == "missing":
        return tmp_path / "nope.png", "no such file"
    if kind == "directory":
        (tmp_path / "adir.png").mkdir()
        return tmp_path / "adir.png", "is a directory"
    if kind == "empty":
        (tmp_path / "empty.png").write_bytes(b"")
        return tmp_path / "empty.png", "empty file (0 bytes)"
    if kind == "text":
        (tmp_path / "notes.png").write_text("this is not an image\n")
        return tmp_path / "notes.png", "not a recognised image format"
    fmt = {"truncated-png": "png", "truncated-jpeg": "jpg"}[kind]
    Image.fromarray(astronaut).save(tmp_path / f"full.{fmt}")
    return _truncated(tmp_path / f"full.{fmt}", tmp_path / f"cut.{fmt}"), "truncated or corrupt image data"


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "text", "truncated-png", "truncated-jpeg"])
def test_bad_input_raises_image_error_naming_file_and_reason(tmp_path, astronaut, kind):
    path, reason = make_bad(kind, tmp_path, astronaut)
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert path.name in message and reason in message
    assert info.value.path == str(path) and reason in info.value.reason


def test_truncated_read_is_refused_even_if_someone_enabled_load_truncated(tmp_path, astronaut, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path, reason = make_bad("truncated-jpeg", tmp_path, astronaut)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        read_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for whoever set it


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    Image.new("L", (200, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageError) as info:
        read_image(tmp_path / "big.png", max_pixels=10_000)
    msg = str(info.value)
    assert "big.png" in msg and "200x100 = 0.02 MP, over the 0.01 MP limit" in msg
    assert "RESTOREKIT_MAX_PIXELS" in msg

    monkeypatch.setenv("RESTOREKIT_MAX_PIXELS", "19999")
    with pytest.raises(ImageError, match="over the"):
        read_image(tmp_path / "big.png")
    assert read_image(tmp_path / "big.png", max_pixels=20_000)[0].shape == (1, 100, 200)  # argument wins
    monkeypatch.setenv("RESTOREKIT_MAX_PIXELS", "none")
    assert read_image(tmp_path / "big.png")[0].shape == (1, 100, 200)
    monkeypatch.setenv("RESTOREKIT_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="RESTOREKIT_MAX_PIXELS"):
        read_image(tmp_path / "big.png")


def test_default_limit_message_matches_pillow_limit():
    assert rio.DEFAULT_MAX_PIXELS == 178_956_970
    assert rio._megapixels(20000 * 20000, rio.DEFAULT_MAX_PIXELS) == ("400.0", "178.9")


def test_animated_gif_warns_and_uses_first_frame(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (8, 6), c) for c in colours]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    with pytest.warns(UserWarning, match=r"anim\.gif: animated image with 3 frames; using the first frame"):
        t, meta = read_image(tmp_path / "anim.gif")
    assert meta.n_frames == 3 and t.shape == (3, 6, 8)
    assert torch.equal(t[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


# ------------------------------------------------------------------------- writing safely


def test_second_write_is_refused_and_original_kept(tmp_path, astronaut):
    path = write_image(tmp_path / "o.png", to_tensor(astronaut))
    original = path.read_bytes()
    with pytest.raises(ImageError) as info:
        write_image(path, torch.zeros(3, 4, 4))
    assert "o.png" in str(info.value) and "already exists (pass overwrite=True / --overwrite" in str(info.value)
    assert path.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["o.png"]

    write_image(path, torch.zeros(3, 4, 4), overwrite=True)
    assert np.asarray(Image.open(path)).shape == (4, 4, 3)


def test_unsupported_suffix_fails_cleanly(tmp_path):
    with pytest.raises(ImageError, match=r"out\.xyz: unsupported output format"):
        write_image(tmp_path / "out.xyz", torch.zeros(3, 4, 4))
    assert os.listdir(tmp_path) == []


def test_failed_encode_leaves_no_temp_file_and_keeps_the_original(tmp_path, monkeypatch):
    path = write_image(tmp_path / "keep.png", torch.full((3, 4, 4), 0.5))
    before = path.read_bytes()

    def broken_save(self, fp, format=None, **params):
        fp.write(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError, match=r"keep\.png: could not write \(disk full\)"):
        write_image(path, torch.zeros(3, 4, 4), overwrite=True)
    assert os.listdir(tmp_path) == ["keep.png"] and path.read_bytes() == before


def test_write_creates_parent_folders_and_normal_permissions(tmp_path):
    out = write_image(tmp_path / "a" / "b" / "c.png", torch.zeros(1, 3, 3))
    assert out.is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == (0o666 & ~umask)  # not the 0600 of a temp file


def test_16_bit_only_where_the_format_allows(tmp_path):
    t = torch.rand(3, 5, 5)
    with pytest.raises(ImageError, match="cannot store 16-bit"):
        write_image(tmp_path / "x.jpg", t, bit_depth=16)
    meta16 = ImageMeta(path=None, format="PNG", mode="RGB", bit_depth=16, channels=3)
    write_image(tmp_path / "x.jpg", t, meta16)  # inherited 16 falls back to 8 for JPEG
    assert Image.open(tmp_path / "x.jpg").mode == "RGB"


def test_quantize_rounds_clamps_and_handles_nan():
    t = torch.tensor([[[0.6 / 255, 1.4 / 255, 254.5001 / 255, -0.2, 1.7, float("nan")]]])
    assert to_uint8(t)[0, :, 0].tolist() == [1, 1, 255, 0, 255, 0]
    assert to_array(torch.tensor([[[0.5 / 65535 + 1e-7]]]), 16)[0, 0, 0] == 1


# ------------------------------------------------------------------------- listing


def test_is_image_file_and_list_images(tmp_path):
    assert is_image_file("x.PNG") and is_image_file(Path("a/b.jpeg")) and not is_image_file("x.gif")
    for name in ["b.png", "a.JPG", "c.webp", "notes.txt", ".hidden.png", "sub/d.tif", ".git/e.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.webp"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "a.JPG",
        "b.png",
        "c.webp",
        "sub/d.tif",
    ]
    with pytest.raises(ImageError, match="no such folder"):
        list_images(tmp_path / "missing")


def test_no_warnings_on_a_plain_read(tmp_path, camera):
    Image.fromarray(camera).save(tmp_path / "c.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(tmp_path / "c.png")


def test_16bit_colour_png_keeps_its_icc_profile_and_pixels(tmp_path):
    """A 16-bit colour PNG with an ICC profile (e.g. from a raw converter) round-trips bit-exactly."""
    from PIL import ImageCms

    from restorekit.io import ImageMeta, write_image

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    a = RNG.integers(0, 65536, (19, 23, 3), dtype=np.uint16)
    meta = ImageMeta(path=None, format="PNG", mode="RGB", bit_depth=16, channels=3, icc_profile=icc)
    out = write_image(tmp_path / "icc16.png", a, meta)
    t, back = read_image(out)
    assert back.bit_depth == 16 and back.icc_profile == icc
    assert np.array_equal(as_uint(t, 16), a)


# ------------------------------------------------------- image data that stops early (issue 13, finding 1)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def grey_png(width: int, height: int, idat: bytes, *, interlace: int = 0) -> bytes:
    """An 8-bit grey PNG around hand-made IDAT data, with valid CRCs so Pillow really decodes it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def refuse_decoding(monkeypatch) -> None:
    """Make any pixel decode fail the test: checks that must happen from the header alone."""
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("the file was decoded; it should have been refused from its header")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)


def test_png_whose_zlib_stream_ends_after_a_few_rows_is_refused(tmp_path):
    """issue 13, finding 1: IHDR + 5 of 64 rows in a complete zlib stream was read with black rows."""
    rows = b"".join(b"\x00" + bytes(range(1, 65)) for _ in range(5))
    path = tmp_path / "five_rows.png"
    path.write_bytes(grey_png(64, 64, zlib.compress(rows)))
    with pytest.raises(ImageError, match=r"truncated or corrupt image data \(PNG image data ends after 325 of 4,160"):
        read_image(path)


@pytest.mark.parametrize("interlace", [0, 1])
def test_png_stream_one_row_short_is_refused_even_when_black(tmp_path, interlace):
    """issue 13, finding 1: an all-black image cannot be told apart from missing rows by its pixels."""
    raw = rio._png_raw_size(33, 21, 1, 8, bool(interlace))
    path = tmp_path / "short.png"
    path.write_bytes(grey_png(33, 21, zlib.compress(bytes(raw - 34)), interlace=interlace))
    with pytest.raises(ImageError, match="short.png: truncated or corrupt image data"):
        read_image(path)
    path.write_bytes(grey_png(33, 21, zlib.compress(bytes(raw)), interlace=interlace))
    assert read_image(path)[0].abs().max() == 0  # the complete black image still reads


def test_tiny_png_declaring_a_huge_image_is_refused_before_decoding(tmp_path, monkeypatch):
    """issue 13, finding 1: 97 bytes declaring 6000x6600 took seconds and the full allocation."""
    path = tmp_path / "bomb.png"
    path.write_bytes(grey_png(6000, 6600, zlib.compress(bytes(6001 * 3))))
    assert len(path.read_bytes()) < 100
    refuse_decoding(monkeypatch)
    with pytest.raises(ImageError) as info:
        read_image(path)
    assert str(info.value) == (
        f"{path}: truncated or corrupt image data (a 6000x6600 PNG needs 39,606,600 bytes of pixel data; "
        "its 40 compressed bytes hold at most 41,280)"
    )


def test_tiny_jpeg_declaring_a_huge_image_is_refused_before_decoding(tmp_path, monkeypatch):
    """issue 13, finding 1 (JPEG twin): libjpeg pads scan data cut short by an end marker."""
    full = io.BytesIO()
    Image.new("RGB", (6000, 6000), (90, 120, 200)).save(full, format="JPEG")
    path = tmp_path / "bomb.jpg"
    path.write_bytes(full.getvalue()[:1200] + b"\xff\xd9")
    refuse_decoding(monkeypatch)
    with pytest.raises(ImageError, match=r"bomb.jpg: truncated or corrupt image data \(a 6000x6000 JPEG needs"):
        read_image(path)


def test_highly_compressible_images_still_read(tmp_path):
    """issue 13, finding 1: the size bounds are proven limits, tight enough to pass the best encoders."""
    Image.new("L", (4000, 4000)).save(tmp_path / "black.png", optimize=True)  # ~1030:1, near deflate's 1032
    assert read_image(tmp_path / "black.png")[0].shape == (1, 4000, 4000)
    for name, options in {"base": {}, "opt": {"optimize": True}, "prog": {"progressive": True, "optimize": True}}.items():
        for mode, subsampling in (("L", 0), ("RGB", 0), ("RGB", 2)):
            path = tmp_path / f"flat_{name}_{mode}{subsampling}.jpg"
            Image.new(mode, (1500, 1000), 0).save(path, quality=1, subsampling=subsampling, **options)
            assert read_image(path)[0].shape[1:] == (1000, 1500), path.name


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize(("width", "height", "bit_depth", "greyscale", "alpha"),
                         [(1, 1, 8, True, False), (5, 3, 1, True, False), (17, 9, 16, False, True), (9, 17, 4, True, False)])
def test_png_raw_size_matches_real_encodes(width, height, bit_depth, greyscale, alpha, interlace):
    """The byte count the exact check demands is what a real (pypng) encoder produces, Adam7 included."""
    import png

    channels = (1 if greyscale else 3) + alpha
    rows = RNG.integers(0, 2**bit_depth, (height, width * channels)).tolist()
    blob = io.BytesIO()
    png.Writer(width, height, greyscale=greyscale, alpha=alpha, bitdepth=bit_depth, interlace=interlace).write(blob, rows)
    idat = b"".join(body for kind, body in png.Reader(bytes=blob.getvalue()).chunks() if kind == b"IDAT")
    assert len(zlib.decompress(idat)) == rio._png_raw_size(width, height, channels, bit_depth, interlace)


def test_tiff_under_our_limit_is_not_refused_by_pillows_own_check_at_load(tmp_path, monkeypatch):
    """Found by the issue 13 fuzzing: Pillow re-checks TIFF sizes while loading, against its own limit,
    warning about (or refusing) a TIFF our --max-pixels / RESTOREKIT_MAX_PIXELS allows."""
    Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "a.tif")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels: over Pillow's hard limit (2x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "a.tif", max_pixels=None)[0].shape == (1, 64, 64)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
