"""restorekit: image restoration across many degradation types and levels.

    import restorekit
    out = restorekit.restore("noisy.png", task="denoise", level=25)       # HxWxC array, file's bit depth
    restorer = restorekit.Restorer("adafm_denoise_s15_s75", tile=512)      # load once, restore many
    clean = restorer.restore(chw_tensor, level=30)

Both are imported on first use, so `import restorekit` stays light (no torch until then).
"""

from __future__ import annotations

__version__ = "0.1.0"


def restore(image, output=None, **options):
    """Restore a path, an HxW[xC] array or a CHW tensor in one call; see `restorekit.api.restore`.

    options: model, task, level, strength, scale, mask, device, precision, tile, tile_overlap, ensemble,
    backend, overwrite. The result has the input's type (a path gives an array at the file's bit depth).
    """
    from restorekit.api import restore as restore_api

    return restore_api(image, output, **options)


def __getattr__(name: str):
    if name == "Restorer":
        from restorekit.api import Restorer

        return Restorer
    raise AttributeError(f"module 'restorekit' has no attribute {name!r}")
