"""Training engine: YAML configs, losses, recipes, the resumable (and torchrun-distributable) loop. See
docs/training.md.

    from restorekit.train import load_config, run
    run(load_config("configs/tiny/denoise.yaml", ["train.steps=50"]), "outputs/tiny")
"""

from __future__ import annotations

from pathlib import Path

from restorekit.train.config import Config, load_config, validate_config


def run(cfg: Config, out: str | Path, resume: str | None = None, progress: str | None = None) -> dict:
    """Train `cfg` into `out` in this process (or this torchrun rank); see trainer.train."""
    from restorekit import distributed
    from restorekit.train import trainer

    dist = distributed.setup(cfg.device)
    try:
        return trainer.train(cfg, Path(out), dist, resume=resume, progress_mode=progress)
    finally:
        distributed.teardown(dist)


__all__ = ["Config", "load_config", "run", "validate_config"]
