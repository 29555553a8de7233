"""The field's signature figure: PSNR versus degradation level, one line per model, on the same axes.

A model trained at one level peaks there and collapses away from it; a multi-level method stays high
across the range. Rendered with matplotlib's Agg backend (no display needed), imported lazily so the rest
of restorekit never pays for matplotlib.
"""

from __future__ import annotations

from pathlib import Path

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LEVEL_NAMES = {"denoise": "noise sigma (0-255 scale)", "jpeg": "JPEG quality", "deblur": "blur width",
               "inpaint": "hole size", "interpolate": "missing pixels"}


def plot_levels(grid: dict, path: str | Path, metric: str = "psnr", title: str | None = None) -> Path:
    """Write the PNG plot of `metric` versus level for every model of an `evaluate_grid` result."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    numeric = grid["x_axis"] in ("level", "scale")
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    series = []
    for i, model in enumerate(grid["models"]):
        rows = grid["results"][model]
        xs = [row["level"] if numeric else j for j, row in enumerate(rows)]
        ys = [row[metric] for row in rows]
        line = ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], linewidth=1.8, label=model)[0]
        series.append((xs, ys, line.get_color()))
    _annotate(ax, series, "{:.3f}" if metric == "ssim" else "{:.2f}")
    if not numeric:
        ax.set_xticks(range(len(grid["x"])))
        ax.set_xticklabels(grid["x"], rotation=20, ha="right", fontsize=8)
    else:
        ax.set_xticks(sorted({row["level"] for model in grid["models"] for row in grid["results"][model]}))
    axis_label = {"level": LEVEL_NAMES.get(grid["task"], f"{grid['task']} level"), "scale": "scale factor",
                  "degradation": "degradation"}[grid["x_axis"]]
    ax.set_xlabel(axis_label)
    ax.set_ylabel(f"{metric.upper()}{' (dB)' if metric.startswith('psnr') else ''}")
    ax.set_title(title or f"{Path(grid['dataset']).name}: {metric.upper()} vs {axis_label}", fontsize=10)
    ax.margins(y=0.12)  # room for the value labels above the top points
    return _finish(fig, ax, path)


def _annotate(ax, series: list[tuple[list, list, str]], fmt: str) -> None:
    """Value labels that do not collide: at each x the highest value is labelled above its point, the
    lowest below, the ones in between to the right (series may cover different x: the zoo's level ranges)."""
    for x in dict.fromkeys(x for xs, _, _ in series for x in xs):
        points = [(ys[xs.index(x)], colour) for xs, ys, colour in series if x in xs]
        order = sorted(range(len(points)), key=lambda k: points[k][0])
        for rank, k in enumerate(order):
            y, colour = points[k]
            if rank == len(order) - 1:
                offset, align = (0, 6), "center"
            elif rank == 0:
                offset, align = (0, -12), "center"
            else:
                offset, align = (7, -3), "left"
            ax.annotate(fmt.format(y), (x, y), textcoords="offset points", xytext=offset, ha=align,
                        fontsize=7, color=colour)


def plot_strength_sweeps(sweeps: list[dict], path: str | Path, title: str, curve=None) -> Path:
    """PSNR versus lambda, one line per input level (`restorekit adafm sweep/fit-lambda` results), each with
    its best lambda marked (filled) and, given the fitted lambda(level) curve, where the curve puts it (ring).
    A good modulated model gives smooth single-peaked curves whose peaks move with the level."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, sweep in enumerate(sweeps):
        strengths, psnrs = sweep["strengths"], sweep["psnr"]
        line = ax.plot(strengths, psnrs, linewidth=1.6, label=f"level {sweep['level']:g}")[0]
        best = max(range(len(psnrs)), key=psnrs.__getitem__)
        ax.plot(strengths[best], psnrs[best], marker=MARKERS[i % len(MARKERS)], color=line.get_color())
        if curve is not None:
            lam = curve(sweep["level"])
            ax.axvline(lam, color=line.get_color(), linewidth=0.8, linestyle=":")
    ax.set_xlabel("strength lambda (0 = start level, 1 = end level)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=10)
    return _finish(fig, ax, path)


def _finish(fig, ax, path: Path) -> Path:
    """Grid, legend, tight layout; write the PNG and free the figure."""
    import matplotlib.pyplot as plt

    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
