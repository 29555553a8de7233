"""`make demo`: degrade the embedded sample images at several levels and restore them.

Uses scikit-image's bundled photographs (no download), the same degradation and metric code as
`restorekit eval`, and whatever models are available for each task (for now the built-in baselines:
MATLAB bicubic for SR, identity otherwise). Writes images, results.json and report.md/.html.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from restorekit import evaluation, io, metrics
from restorekit.infer import run_model
from restorekit.zoo import load_model

SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea", "camera")


@dataclass(frozen=True)
class DemoCase:
    task: str
    level: float | None
    scale: int
    model: str

    @property
    def label(self) -> str:
        if self.task == "sr":
            return f"sr_x{self.scale}"
        return f"{self.task}_{self.level:g}"


DEMO_CASES = (
    *(DemoCase("sr", None, s, "bicubic") for s in (2, 3, 4)),
    *(DemoCase("denoise", s, 1, "identity") for s in (15, 25, 50)),
    *(DemoCase("jpeg", q, 1, "identity") for q in (10, 30, 60)),
)


def sample_images(names: tuple[str, ...] = SAMPLE_IMAGES) -> dict[str, torch.Tensor]:
    """scikit-image's bundled samples as CHW float tensors in [0, 1] (grey ones stay one channel)."""
    from skimage import data

    images = {}
    for name in names:
        array = getattr(data, name)().astype(np.float32) / 255
        tensor = torch.from_numpy(array)[None] if array.ndim == 2 else torch.from_numpy(array).permute(2, 0, 1)
        images[name] = tensor.contiguous()
    return images


def run_demo(out_dir: Path, cases=DEMO_CASES, names: tuple[str, ...] = SAMPLE_IMAGES) -> dict:
    """Run every case on every sample; returns (and writes) the results."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = sample_images(names)
    rows = []
    for case in cases:
        model = load_model(case.model, **({"scale": case.scale} if case.task == "sr" else {}))
        setup = evaluation.default_setup(case.task, scale=case.scale if case.task == "sr" else None, level=case.level)
        for name, clean in images.items():
            degraded, target = evaluation.make_input(clean, name, setup)
            restored = run_model(model, degraded).clamp(0, 1)
            folder = out_dir / case.label
            io.write_image(folder / f"{name}_input.png", degraded.clamp(0, 1), overwrite=True)
            io.write_image(folder / f"{name}_{case.model}.png", restored, overwrite=True)
            io.write_image(folder / f"{name}_clean.png", target, overwrite=True)
            rows.append({
                "case": case.label, "task": case.task, "level": case.level, "scale": case.scale,
                "model": case.model, "image": name,
                "psnr": float(metrics.psnr_batch(restored, target, setup.protocol)),
                "ssim": float(metrics.ssim_batch(restored, target, setup.protocol)),
                "protocol": setup.describe(),
            })
    report = {"samples": list(names), "results": rows}
    from restorekit.cli.common import write_json

    write_json(out_dir / "results.json", report)
    (out_dir / "report.md").write_text(markdown_report(rows))
    (out_dir / "report.html").write_text(html_report(rows))
    return report


def _summary(rows: list[dict]) -> list[tuple[str, str, float, float, str]]:
    cases: dict[str, list[dict]] = {}
    for row in rows:
        cases.setdefault(row["case"], []).append(row)
    summary = []
    for label, group in cases.items():
        p = group[0]["protocol"]
        protocol = f"{'Y' if p['y_channel'] else 'RGB'}, crop {p['crop_border']}, {p['quantize']}"
        summary.append((label, group[0]["model"], float(np.mean([r["psnr"] for r in group])),
                        float(np.mean([r["ssim"] for r in group])), protocol))
    return summary


def markdown_report(rows: list[dict]) -> str:
    lines = ["# restorekit demo", "", "Mean over the scikit-image samples. Seed 0 for every noisy/JPEG input.", "",
             "| case | model | PSNR (dB) | SSIM | protocol |", "|---|---|---|---|---|"]
    lines += [f"| {c} | {m} | {p:.2f} | {s:.4f} | {proto} |" for c, m, p, s, proto in _summary(rows)]
    return "\n".join(lines) + "\n"


def html_report(rows: list[dict]) -> str:
    body = ["<h1>restorekit demo</h1>", "<table border=1 cellpadding=4>",
            "<tr><th>case</th><th>model</th><th>PSNR (dB)</th><th>SSIM</th><th>protocol</th></tr>"]
    for c, m, p, s, proto in _summary(rows):
        body.append(f"<tr><td>{html.escape(c)}</td><td>{html.escape(m)}</td><td>{p:.2f}</td>"
                    f"<td>{s:.4f}</td><td>{html.escape(proto)}</td></tr>")
    body.append("</table>")
    for row in rows:
        if row["image"] != rows[0]["image"]:
            continue
        folder, name = row["case"], row["image"]
        body.append(f"<h2>{html.escape(folder)}: {html.escape(name)}</h2><p>")
        for kind in ("input", row["model"], "clean"):
            body.append(f'<figure style="display:inline-block"><img src="{folder}/{name}_{kind}.png" width=256>'
                        f"<figcaption>{kind}</figcaption></figure>")
        body.append("</p>")
    return "<!doctype html><meta charset=utf-8><title>restorekit demo</title>\n" + "\n".join(body) + "\n"
