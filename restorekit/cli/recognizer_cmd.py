"""`restorekit recognizer`: train and score the distortion recogniser that `restorekit analyze` runs.

    restorekit recognizer train configs/recognition/recognizer_fd_cpu.yaml --out runs/recognition/fd_cpu --resume
    restorekit recognizer eval --model runs/recognition/fd_cpu/final.safetensors --set runs/recognition/fd_basic

The loop and the scores: restorekit/train/recognition.py; the sets: `restorekit distortion-set`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from restorekit.errors import RestorekitError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("recognizer", help="train or score the distortion recogniser (restorekit analyze)",
                              description="Train the distortion recogniser on `restorekit distortion-set` sets, or "
                              "score one: accuracy on a classification set, mAP@0.5/0.75/0.9 on a detection set.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train from a configs/recognition/*.yaml config")
    train.add_argument("config")
    train.add_argument("--out", required=True, help="run folder (checkpoints, log.jsonl, final.safetensors)")
    train.add_argument("--resume", action="store_true", help="continue from the newest good checkpoint in --out")
    train.set_defaults(run=run_train)
    score = actions.add_parser("eval", help="score a recogniser on a set's split")
    score.add_argument("--model", required=True, help="zoo name or weights file")
    score.add_argument("--set", required=True, action="append", dest="sets", help="a set folder (repeatable)")
    score.add_argument("--split", default="test")
    score.add_argument("--limit", type=int, help="first N images of the split")
    score.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    score.set_defaults(run=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from restorekit.train.recognition import RecognitionConfig, train

    cfg = RecognitionConfig.load(args.config)
    out = Path(args.out)
    if (out / "final.safetensors").exists() and not args.resume:
        raise RestorekitError(f"{out}: already holds a trained model; use another --out")
    path = train(cfg, out, resume=args.resume, config_path=args.config,
                 on_log=lambda e: print(f"step {e['step']}: loss {e['loss']:.4f} ({e['it_per_s']} it/s)"))
    print(f"restorekit: {path}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from restorekit.atomic import write_json
    from restorekit.tasks import ANALYZE
    from restorekit.train.recognition import evaluate
    from restorekit.zoo import load_model

    model = load_model(args.model)
    if ANALYZE not in model.info.tasks:
        raise RestorekitError(f"model {args.model!r} is not a distortion recogniser")
    results = [evaluate(model, folder, args.split, args.limit) for folder in args.sets]
    for result in results:
        figures = {k: v for k, v in result.items() if isinstance(v, float)}
        print(f"{result['set']} ({result['kind']}, {result['split']}, {result['n_images']} images): "
              + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    if args.json:
        write_json(args.json, {"model": args.model, "results": results})
    return 0
