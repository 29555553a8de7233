"""The AdaFM tables of docs/BENCHMARKS.md, from the JSON files the CPU recipes write under outputs/adafm/.

    python scripts/adafm_report.py            # prints markdown (sections whose inputs are missing say so)

Inputs: the level grids (`restorekit eval --levels ... --json`), the per-level baselines and the Table 3
runs (scripts/adafm_denoise_baselines_cpu.sh, adafm_dejpeg_cpu.sh, adafm_table3_cpu.sh) and the lambda
sweeps (`restorekit adafm sweep --json`). Paper figures: AdaFM paper Tables 3 and 5 (spec section 4.8).
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path("outputs/adafm")
# Paper, Table 5: basic models trained at each level (the accuracy reference) and Table 3 endpoints.
PAPER_BASIC = {
    "denoise": {15: 34.10, 25: 31.44, 35: 29.82, 50: 28.20, 75: 26.49},
    "jpeg": {80: 38.81, 60: 36.00, 40: 34.34, 20: 31.93, 10: 29.55},
}
PAPER_ADAFM_END = {"denoise": {75: 26.35}, "jpeg": {10: 29.35}}
PAPER_TABLE3 = {  # level: (AdaBN, conditional IN, AdaFM-Net)
    "denoise": {15: (33.83, 31.33, 34.10), 75: (19.68, 24.15, 26.35)},
    "jpeg": {80: (38.29, 36.99, 38.81), 10: (27.61, 28.89, 29.35)},
}
PAPER_TABLE2_DENOISE = {1: 26.35, 3: 26.38, 5: 26.39, 7: 26.40}  # CBSD68 sigma 75; baseline 26.49
REPORTS = {  # task: (zoo model, level grid JSON, baseline JSON pattern, dataset label, level symbol)
    "denoise": ("adafm_denoise_s15_s75", "cbsd68_levels.json", "baseline_s{}.json", "CBSD68", "sigma"),
    "jpeg": ("adafm_dejpeg_q80_q10", "live1_levels.json", "dejpeg_baseline_q{}.json", "LIVE1 (Y)", "q"),
}


def load(name: str) -> dict | None:
    path = OUT / name
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def level_key(level: float) -> str:
    return f"{level:g}"


LEVEL_COLUMNS = "| {symbol} | input (identity) | AdaFM-Net at lambda(level) | lambda | basic model, same budget | AdaFM - basic |"


def level_cells(row: dict, identity: dict, baseline: dict | None) -> tuple[str, float | None]:
    """The columns every modulation table starts with (level, input, AdaFM-Net, lambda, same-budget basic model,
    gap), and the gap itself; `baseline` is that level's eval JSON, None where it was not trained."""
    level = row["level"]
    gap = None if baseline is None else row["psnr"] - baseline["psnr"]
    cells = (f"| {level_key(level)} | {fmt(identity.get(level))} | {fmt(row['psnr'])} | "
             f"{fmt(row.get('strength'), 3)} | {fmt(baseline and baseline['psnr'])} | {fmt(gap)} |")
    return cells, gap


def modulation_table(task: str) -> str:
    model, grid_name, baseline_name, dataset, symbol = REPORTS[task]
    grid = load(grid_name)
    if grid is None:
        return f"*{OUT / grid_name} is missing: run the recipe first.*\n"
    rows_by_model = grid["results"]
    identity = {r["level"]: r["psnr"] for r in rows_by_model.get("identity", [])}
    lines = [LEVEL_COLUMNS.format(symbol=symbol) + " paper basic | paper AdaFM (end level) |",
             "|---:|" + "---:|" * 7]
    gaps = []
    for row in rows_by_model[model]:
        cells, gap = level_cells(row, identity, load(baseline_name.format(level_key(row["level"]))))
        gaps += [] if gap is None else [gap]
        level = int(row["level"])
        lines.append(f"{cells} {fmt(PAPER_BASIC[task].get(level))} | {fmt(PAPER_ADAFM_END[task].get(level))} |")
    n = rows_by_model[model][0]["n_images"]
    lines.append("")
    lines.append(f"{dataset}, {n} images; protocol: {json.dumps(grid['protocol'])}.")
    if gaps:
        lines.append(f"Largest shortfall of AdaFM-Net against the per-level basic models: {-min(gaps):.2f} dB "
                     f"(acceptance: at most 0.3 dB).")
    return "\n".join(lines) + "\n"


def table3(task: str) -> str:
    if task != "denoise":
        return ""
    adafm = {r["level"]: r["psnr"] for r in (load("cbsd68_levels.json") or {"results": {}})["results"]
             .get("adafm_denoise_s15_s75", [])}
    lines = ["| sigma | AdaBN (ours) | conditional IN (ours) | AdaFM-Net (ours) | paper AdaBN | paper CIN | "
             "paper AdaFM |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for level, (p_bn, p_cin, p_fm) in PAPER_TABLE3["denoise"].items():
        bn, cin = load(f"table3_adabn_s{level}.json"), load(f"table3_cin_s{level}.json")
        lines.append(f"| {level} | {fmt(bn and bn['psnr'])} | {fmt(cin and cin['psnr'])} | {fmt(adafm.get(level))} | "
                     f"{p_bn:.2f} | {p_cin:.2f} | {p_fm:.2f} |")
    return "\n".join(lines) + "\n"


def kernel_table() -> str:
    """Table 2 at the CPU budget (scripts/adafm_kernel_study_cpu.sh): AdaFM filter size against the same-budget
    sigma-75 baseline, with each model's largest PSNR step between lambdas 0.1 apart at sigma 45."""
    base = load("kernel_study/baseline_s75.json")
    if base is None:
        return "*outputs/adafm/kernel_study is missing: run scripts/adafm_kernel_study_cpu.sh.*\n"
    lines = ["| AdaFM filter | PSNR at sigma 75 | - baseline | paper | paper - baseline | largest lambda step (sigma 45) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, label, kernel in (("adafm_k1", "1x1", 1), ("adafm_k3", "3x3", 3), ("adafm_k5", "5x5", 5),
                                ("adafm_k7", "7x7", 7), ("adafm_k1_all", "1x1 + after the long-skip conv", None)):
        row, sweep = load(f"kernel_study/{name}.json"), load(f"kernel_study/sweep_{name}.json")
        psnr = row and row["psnr"]
        step = None
        if sweep:
            values = (sweep["sweeps"][0] if "sweeps" in sweep else sweep)["psnr"]
            step = max(abs(b - a) for a, b in zip(values, values[1:]))
        paper = PAPER_TABLE2_DENOISE.get(kernel) if kernel else None
        lines.append(f"| {label} | {fmt(psnr)} | {fmt(psnr and psnr - base['psnr'])} | {fmt(paper)} | "
                     f"{fmt(paper and paper - 26.49)} | {fmt(step)} |")
    lines.append(f"| baseline (all layers, sigma 75) | {fmt(base['psnr'])} | 0 | 26.49 | 0 | |")
    lines.append("")
    lines.append(f"CBSD68, {base['n_images']} images; protocol: {json.dumps(base['protocol'])}.")
    return "\n".join(lines) + "\n"


def sweep_table(name: str) -> str:
    data = load(name)
    if data is None:
        return f"*{OUT / name} is missing.*\n"
    sweeps = data["sweeps"] if "sweeps" in data else [data]
    strengths = sweeps[0]["strengths"]
    lines = ["| level \\ lambda | " + " | ".join(f"{s:.1f}" for s in strengths) + " | best | largest step |",
             "|---|" + "---:|" * (len(strengths) + 2)]
    for sweep in sweeps:
        psnrs = sweep["psnr"]
        steps = [abs(b - a) for a, b in zip(psnrs, psnrs[1:])]
        best = strengths[max(range(len(psnrs)), key=psnrs.__getitem__)]
        lines.append(f"| {sweep['level']:g} | " + " | ".join(f"{p:.2f}" for p in psnrs)
                     + f" | {best:.1f} | {max(steps):.2f} dB |")
    lines.append("")
    lines.append(f"{sweeps[0]['n_images']} images per level; acceptance: no step above 0.3 dB between consecutive "
                 "lambdas 0.1 apart, peak near the fitted lambda(level).")
    return "\n".join(lines) + "\n"


def faithful_dejpeg() -> str:
    grid = load("dejpeg_noskip/live1_levels.json")
    if grid is None:
        return ""
    rows = grid["results"]
    levels = [r["level"] for r in rows["identity"]]
    lines = ["| model | " + " | ".join(f"q{lv:g}" for lv in levels) + " |", "|---|" + "---:|" * len(levels)]
    for model, label in (("identity", "input (identity)"), ("adafm_dejpeg_q80_q10", "faithful body, no global skip")):
        lines.append(f"| {label} | " + " | ".join(f"{r['psnr']:.2f}" for r in rows[model]) + " |")
    return "\n".join(lines) + "\n"


PAPER_TABLE4_SR = {3: 34.34, 4: 32.00}  # Set5: the x3 basic model (Table 3), the x3 -> x4 AdaFM at x4 (Table 4)
PAPER_SR_BASELINE_X4 = 32.13
ZOO_DENOISER = "adafm_denoise_s15_s75"


def reference_psnr(model: str, dataset: str, sigma: float) -> float | None:
    """A released model's PSNR from scripts/reference_checkpoints.sh (outputs/reference/), when it was run here."""
    path = Path("outputs/reference") / f"{model}_{dataset}_s{sigma:g}.json"
    return json.loads(path.read_text())["psnr"] if path.is_file() else None


def grid_psnr(name: str) -> dict[float, float]:
    """level -> PSNR of the one non-identity model of a level grid JSON (empty when the file is missing)."""
    grid = load(name)
    if grid is None:
        return {}
    rows = next(rows for model, rows in grid["results"].items() if model != "identity")
    return {r["level"]: r["psnr"] for r in rows}


def long_denoiser_table(dataset: str) -> str:
    """The second zoo denoiser (scripts/adafm_denoise_long_cpu.sh) on one colour set at every sigma: input, the
    model at lambda(sigma), its same-budget per-level baselines and the first zoo model (CBSD68;
    scripts/adafm_denoise_long_baselines_cpu.sh), the released FFDNet colour and CDnCNN-B through the same eval.
    Float noise: the paper's figures (clipped, quantized noisy images) belong beside quantized_table, not here."""
    grid = load(f"long/{dataset.lower()}_levels.json")
    if grid is None:
        return f"*outputs/adafm/long/{dataset.lower()}_levels.json is missing: run scripts/adafm_denoise_long_cpu.sh.*\n"
    rows = grid["results"]
    identity = {r["level"]: r["psnr"] for r in rows["identity"]}
    first = grid_psnr("long/first_zoo_cbsd68_levels.json") if dataset == "CBSD68" else {}
    lines = [LEVEL_COLUMNS.format(symbol="sigma") + " first zoo model | FFDNet colour | CDnCNN-B |",
             "|---:|" + "---:|" * 8]
    for row in rows[ZOO_DENOISER]:
        sigma = row["level"]
        base = load(f"long/baseline_s{level_key(sigma)}.json") if dataset == "CBSD68" else None
        cells, _ = level_cells(row, identity, base)
        lines.append(f"{cells} {fmt(first.get(sigma))} | {fmt(reference_psnr('ffdnet_color', dataset, sigma))} | "
                     f"{fmt(reference_psnr('cdncnn_b', dataset, sigma))} |")
    lines += ["", f"{dataset}, {rows[ZOO_DENOISER][0]['n_images']} images; protocol: {json.dumps(grid['protocol'])}."]
    return "\n".join(lines) + "\n"


def quantized_table() -> str:
    """The second zoo denoiser under the paper's protocol (noisy image clipped and rounded), CBSD68, beside the
    paper's AdaFM-Net (Table 5 endpoints) and per-level basic models, which were measured the same way."""
    data = load("long/cbsd68_quantized.json")
    if data is None:
        return "*outputs/adafm/long/cbsd68_quantized.json is missing.*\n"
    rows = data["results"][ZOO_DENOISER]
    sigmas = [int(r["level"]) for r in rows]
    return ("| CBSD68 sigma | " + " | ".join(map(str, sigmas)) + " |\n|---|" + "---:|" * len(rows)
            + "\n| zoo model (second), quantized noise | " + " | ".join(fmt(r["psnr"]) for r in rows) + " |"
            + "\n| paper AdaFM-Net (1x1, 64 x 16) | "
            + " | ".join(fmt(PAPER_TABLE3["denoise"].get(s, (None, None, None))[2]) for s in sigmas) + " |"
            + "\n| paper basic model at that sigma | " + " | ".join(fmt(PAPER_BASIC["denoise"].get(s)) for s in sigmas)
            + " |\n\n" + f"{rows[0]['n_images']} images; degradation {rows[0]['spec'].replace(f'sigma={sigmas[0]}', 'sigma=S')}; "
            f"protocol: {json.dumps(data['protocol'])}.\n")


def sr_slider_table(dataset: str) -> str:
    """The SR slider (scripts/adafm_sr_cpu.sh) at x3..x4 beside bicubic, the same recipe without the global skip
    (outputs/adafm/sr_noskip/), and the paper's Set5 figures (Tables 3-4)."""
    name = f"sr_{dataset.lower()}_scales.json"
    grid, noskip = load(name), load(f"sr_noskip/{name}")
    if grid is None:
        return f"*outputs/adafm/{name} is missing: run scripts/adafm_sr_cpu.sh.*\n"
    rows = grid["results"]
    labels = [r["x"] for r in rows["bicubic"]]
    lines = ["| model | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    lines.append("| bicubic | " + " | ".join(fmt(r["psnr"]) for r in rows["bicubic"]) + " |")
    model = rows["adafm_sr_x3_x4"]
    lines.append("| AdaFM SR slider (ours) | " + " | ".join(fmt(r["psnr"]) for r in model) + " |")
    lines.append("| lambda(scale) | " + " | ".join(fmt(r.get("strength"), 3) for r in model) + " |")
    lines.append("| ours - bicubic | " + " | ".join(f"{m['psnr'] - b['psnr']:+.2f}" for m, b in zip(model, rows["bicubic"]))
                 + " |")
    if noskip:
        lines.append("| same recipe without the global skip, 3,000 + 600 steps | "
                     + " | ".join(fmt(r["psnr"]) for r in noskip["results"]["adafm_sr_x3_x4"]) + " |")
    if dataset == "Set5":
        lines.append(f"| paper (x3 basic; x4 AdaFM 3 -> 4, 5x5; per-level x4 baseline {PAPER_SR_BASELINE_X4:.2f}) | "
                     + " | ".join(fmt(PAPER_TABLE4_SR.get(r["level"])) for r in model) + " |")
    crops = ", ".join(str(r["protocol"]["crop_border"]) for r in model) if "protocol" in model[0] else "ceil(scale)"
    lines += ["", f"{dataset}, {model[0]['n_images']} images; protocol: {json.dumps(grid['protocol'])}; border crop "
              f"by column: {crops}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    print("### Colour denoising, sigma 15 -> 75 (CBSD68, RGB)\n")
    print(modulation_table("denoise"))
    print("### AdaBN and conditional IN (paper Table 3), same body, data and budget\n")
    print(table3("denoise"))
    print("### PSNR against lambda, denoising (CBSD68)\n")
    print(sweep_table("denoise_sweeps.json"))
    print("### AdaFM filter size (paper Table 2), denoising sigma 15 -> 75, same CPU budget\n")
    print(kernel_table())
    for dataset in ("CBSD68", "McMaster"):
        print(f"### The second zoo denoiser (issue 19 item 4), {dataset}\n")
        print(long_denoiser_table(dataset))
    print("### The second zoo denoiser under the paper's quantized protocol (CBSD68)\n")
    print(quantized_table())
    for dataset in ("Set5", "Set14"):
        print(f"### SR slider x3 -> x4 (issue 19 item 2), {dataset}\n")
        print(sr_slider_table(dataset))
    print("### DeJPEG on Y, quality 80 -> 10 (LIVE1)\n")
    print(modulation_table("jpeg"))
    print("### PSNR against lambda, DeJPEG (classic5)\n")
    print(sweep_table("dejpeg_sweeps.json"))
    print("### DeJPEG with the paper's body (no global skip), same CPU budget (LIVE1, Y)\n")
    print(faithful_dejpeg())


if __name__ == "__main__":
    main()
