"""`make demo`: degrade the embedded sample images at several levels and restore them.

Uses scikit-image's bundled photographs (no download), the same degradation and metric code as
`restorekit eval`, the built-in baselines (MATLAB bicubic for SR, identity otherwise) and every model
of the zoo at levels across its range (modulated models at their card's lambda(level)). Writes
images, results.json, report.md/.html and one PSNR-versus-level plot per task.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from restorekit import evaluation, io, metrics
from restorekit.api import Restorer
from restorekit.atomic import write_json
from restorekit.card import ModelCard
from restorekit.zoo import zoo_cards

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


BASELINE_CASES = (
    *(DemoCase("sr", None, s, "bicubic") for s in (2, 3, 4)),
    *(DemoCase("denoise", s, 1, "identity") for s in (15, 25, 50)),
    *(DemoCase("jpeg", q, 1, "identity") for q in (10, 30, 60)),
)


def zoo_cases(cards: list[ModelCard] | None = None) -> tuple[DemoCase, ...]:
    """Each zoo model at the baselines' levels inside its range (plus its range ends)."""
    cases = []
    for card in zoo_cards() if cards is None else cards:
        task = card.task
        if task == "sr":
            cases += [DemoCase("sr", None, int(s), card.name) for s in card.card_scales()]
        elif card.level_range() is not None:
            low, high = card.level_range()
            baseline = {c.level for c in BASELINE_CASES if c.task == task}
            levels = sorted({low, high} | {v for v in baseline if low <= v <= high})
            cases += [DemoCase(task, v, 1, card.name) for v in levels]
    return tuple(cases)


def demo_cases() -> tuple[DemoCase, ...]:
    return BASELINE_CASES + zoo_cases()


def sample_images(names: tuple[str, ...] = SAMPLE_IMAGES) -> dict[str, torch.Tensor]:
    """scikit-image's bundled samples as CHW float tensors in [0, 1] (grey ones stay one channel)."""
    from skimage import data

    images = {}
    for name in names:
        images[name] = io.to_tensor(getattr(data, name)())
    return images


def run_demo(out_dir: Path, cases=None, names: tuple[str, ...] = SAMPLE_IMAGES) -> dict:
    """Run every case on every sample; returns (and writes) the results."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = sample_images(names)
    rows = []
    for case in demo_cases() if cases is None else cases:
        restorer = Restorer(case.model, device="cpu", **({"scale": case.scale} if case.task == "sr" else {}))
        setup = evaluation.default_setup(case.task, scale=case.scale if case.task == "sr" else None, level=case.level)
        setup = evaluation.setup_for_model(setup, restorer.model)  # a grey model sees grey samples, as in eval
        for name, clean in images.items():
            degraded, target = evaluation.make_input(clean, name, setup)
            restored = restorer.restore(degraded, level=case.level, scale=case.scale if case.task == "sr" else None)
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
    write_json(out_dir / "results.json", report)
    (out_dir / "report.md").write_text(markdown_report(rows))
    plots = write_plots(rows, out_dir)
    (out_dir / "report.html").write_text(html_report(rows, plots))
    return report


def write_plots(rows: list[dict], out_dir: Path) -> list[str]:
    """One PSNR-versus-level PNG per task that has several levels (mean over the samples)."""
    from restorekit.plots import plot_levels

    written = []
    for task in sorted({r["task"] for r in rows if r["task"] != "sr"}):
        models: dict[str, dict[float, list[float]]] = {}
        for r in rows:
            if r["task"] == task:
                models.setdefault(r["model"], {}).setdefault(r["level"], []).append(r["psnr"])
        levels = sorted({level for by_level in models.values() for level in by_level})
        if len(levels) < 2:
            continue
        grid = {"dataset": "scikit-image samples", "task": task, "x_axis": "level",
                "x": [f"{v:g}" for v in levels], "models": [], "results": {}}
        for model, by_level in models.items():  # each model at its own levels (the zoo's ranges differ)
            grid["models"].append(model)
            grid["results"][model] = [{"level": v, "psnr": float(np.mean(by_level[v]))} for v in sorted(by_level)]
        plot_levels(grid, out_dir / f"{task}_levels.png")
        written.append(f"{task}_levels.png")
    return written


def summary(rows: list[dict]) -> list[tuple[str, str, float, float, str]]:
    """(case, model, mean PSNR, mean SSIM, protocol) per case and model, in run order."""
    cases: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        cases.setdefault((row["case"], row["model"]), []).append(row)
    summary = []
    for (label, _), group in cases.items():
        p = group[0]["protocol"]
        channels = f"grey ({p['grey']})" if p.get("grey") else "Y" if p["y_channel"] else "RGB"
        protocol = f"{channels}, crop {p['crop_border']}, {p['quantize']}"
        summary.append((label, group[0]["model"], float(np.mean([r["psnr"] for r in group])),
                        float(np.mean([r["ssim"] for r in group])), protocol))
    return summary


def markdown_report(rows: list[dict]) -> str:
    lines = ["# restorekit demo", "", "Mean over the scikit-image samples. Seed 0 for every noisy/JPEG input.", "",
             "| case | model | PSNR (dB) | SSIM | protocol |", "|---|---|---|---|---|"]
    lines += [f"| {c} | {m} | {p:.2f} | {s:.4f} | {proto} |" for c, m, p, s, proto in summary(rows)]
    return "\n".join(lines) + "\n"


def html_report(rows: list[dict], plots: list[str] = ()) -> str:
    body = ["<h1>restorekit demo</h1>", "<table border=1 cellpadding=4>",
            "<tr><th>case</th><th>model</th><th>PSNR (dB)</th><th>SSIM</th><th>protocol</th></tr>"]
    for c, m, p, s, proto in summary(rows):
        body.append(f"<tr><td>{html.escape(c)}</td><td>{html.escape(m)}</td><td>{p:.2f}</td>"
                    f"<td>{s:.4f}</td><td>{html.escape(proto)}</td></tr>")
    body.append("</table>")
    body += [f'<h2>{html.escape(p)}</h2><img src="{html.escape(p)}" width=640>' for p in plots]
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
