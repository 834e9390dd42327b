"""The ``paw-ray`` command: one subcommand per capability, each a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys

from paw_ray.errors import PawRayError


def _add_config_args(p: argparse.ArgumentParser, default_preset: str = "demo") -> None:
    p.add_argument("--preset", default=default_preset, choices=["smoke", "demo", "paper"],
                   help=f"size and schedule preset (default: {default_preset})")
    p.add_argument("--config", metavar="FILE", help="YAML config applied over the preset")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override one config value, e.g. --set frl.lr=0.01 (repeatable)")


def config_from_args(args: argparse.Namespace):
    """The preset, then ``--config`` (and ``--set-from``) YAML, then ``--set`` overrides."""
    from paw_ray import config as C

    cfg = C.preset(args.preset)
    for path in (getattr(args, "config", None), getattr(args, "set_from", None)):
        if path:
            cfg = C.load_yaml(path, base=cfg)
    return C.apply_overrides(cfg, args.overrides)


# --------------------------------------------------------------------------- data

def _cmd_synth(args: argparse.Namespace) -> int:
    from paw_ray.data.synthfaces import synthesize

    info = synthesize(n=args.n, size=args.size, seed=args.seed, out=args.out,
                      label_noise=args.label_noise, num_tasks=args.tasks)
    print(json.dumps({"out": args.out, "num_rows": info.num_rows, "image_size": info.image_size}))
    return 0


def _cmd_prepare_celeba(args: argparse.Namespace) -> int:
    from paw_ray.data.celeba import prepare_celeba

    info = prepare_celeba(root=args.root, out=args.out, aligned=args.aligned,
                          allow_partial=args.allow_partial, image_size=args.size,
                          margin=args.margin, limit=args.limit)
    print(json.dumps({"out": args.out, "num_rows": info.num_rows, "image_size": info.image_size}))
    return 0


# --------------------------------------------------------------------------- models

def _cmd_models(args: argparse.Namespace) -> int:
    from paw_ray.models.summary import format_summary, model_summary

    summary = model_summary(config_from_args(args))
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    return 0


# --------------------------------------------------------------------------- training

def _train_config(args: argparse.Namespace):
    from paw_ray import config as C

    cfg = config_from_args(args)
    extra = []
    if args.data:
        extra.append(f"data.path={args.data}")
    if args.max_steps is not None:
        extra.append(f"max_steps={args.max_steps}")
    if args.address:
        extra.append(f"ray.address={args.address}")
    return C.apply_overrides(cfg, extra) if extra else cfg


def _cmd_train(args: argparse.Namespace) -> int:
    from paw_ray.train.run import parse_stages, train
    from paw_ray.train.stages.evaluate import format_table

    cfg = _train_config(args)
    run_dir = args.run_dir or f"runs/{cfg.preset}"
    out = train(cfg, run_dir, stages=parse_stages(args.stages, args.from_stage))
    if out["results"]:
        r = out["results"]
        print()
        print(f"Mean test accuracy ({r['data']}, preset {r['preset']}, {r['n_test']} images):")
        for row, acc in r["mean_accuracy"].items():
            print(f"  {row:<9} {100 * acc:6.2f}%")
        loc = r.get("localization")
        if loc:
            print(f"  FRL pointing accuracy on local attributes: {100 * loc['mean']:.1f}% "
                  f"(a random centre: {100 * loc['chance_mean']:.1f}%)")
        print(f"Full table: {run_dir}/results.md")
    print(f"Run directory: {run_dir}")
    return 0


# --------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paw-ray",
        description="PaW cascade face-attribute network (Ding et al., AAAI 2018) on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="render SynthFaces shards (the embedded default data set)")
    p.add_argument("--n", type=int, required=True, help="number of images (80/10/10 train/val/test)")
    p.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label-noise", type=float, default=0.0, help="share of labels flipped at random")
    p.add_argument("--tasks", type=int, default=0, help="parallel Ray tasks (default: one per 500 images)")
    p.add_argument("--out", required=True, help="output folder or URI")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("prepare-celeba", help="convert CelebA's own files into shards")
    p.add_argument("--root", required=True, help="CelebA folder (official layout, flat, or CSV edition)")
    p.add_argument("--out", required=True, help="output folder or URI")
    p.add_argument("--aligned", action="store_true", help="use img_align_celeba as it is")
    p.add_argument("--allow-partial", action="store_true",
                   help="keep consistent rows, drop the rest and report how many and why")
    p.add_argument("--size", type=int, default=224, help="stored face image side (default 224)")
    p.add_argument("--margin", type=float, default=0.0,
                   help="extra face-box margin as a share of its side (default 0)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (0 = all)")
    p.set_defaults(func=_cmd_prepare_celeba)

    p = sub.add_parser("models", help="parameter counts and output shapes of every network")
    _add_config_args(p, default_preset="paper")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("train", help="run the training pipeline (the main job)",
                       description="Run frl, localize, hint, whole, parts, fusion, finetune, evaluate on a "
                                   "Ray cluster (a local one when no address is given). Stages complete "
                                   "for the same config in --run-dir are reused.")
    _add_config_args(p, default_preset="demo")
    p.add_argument("--set-from", metavar="FILE", help="YAML written by `paw-ray tune` (best config)")
    p.add_argument("--data", metavar="DIR", help="prepared shards (default: SynthFaces rendered for the preset)")
    p.add_argument("--run-dir", metavar="DIR", help="run directory, local or URI (default: runs/<preset>)")
    p.add_argument("--stages", metavar="LIST", help="run exactly these stages (comma-separated), forced")
    p.add_argument("--from-stage", metavar="STAGE", help="rerun this stage and every stage after it")
    p.add_argument("--max-steps", type=int, metavar="N",
                   help="dry run: one epoch of at most N steps per stage")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.set_defaults(func=_cmd_train)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PawRayError as e:
        print(f"paw-ray {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"paw-ray {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
