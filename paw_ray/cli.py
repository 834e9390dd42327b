"""The ``paw-ray`` command: one subcommand per capability, each a thin layer over the library.

Each subcommand imports what it runs inside its own function, on purpose: ``paw-ray --help``
and a bad flag answer at once instead of after importing torch, Ray and matplotlib."""

from __future__ import annotations

import argparse
import json
import sys

from paw_ray.config import DECISION_RULES
from paw_ray.errors import PawRayError
from paw_ray.train.stage_table import STAGES, TRAIN_STAGES


def _add_config_args(p: argparse.ArgumentParser, default_preset: str = "demo") -> None:
    p.add_argument("--preset", default=default_preset, choices=["smoke", "demo", "paper"],
                   help=f"size and schedule preset (default: {default_preset})")
    p.add_argument("--config", metavar="FILE", help="YAML config applied over the preset")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override one config value, e.g. --set frl.lr=0.01 (repeatable)")
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's own log lines (workers, Ray Data plans, progress bars)")


def config_from_args(args: argparse.Namespace):
    """The preset, then ``--config`` (and ``--set-from``) YAML, then ``--set`` overrides."""
    from paw_ray import config as C

    cfg = C.preset(args.preset)
    for path in (getattr(args, "config", None), getattr(args, "set_from", None)):
        if path:
            cfg = C.load_yaml(path, base=cfg)
    return C.apply_overrides(cfg, args.overrides + (["ray.verbose=true"] if getattr(args, "verbose", False) else []))


# --------------------------------------------------------------------------- data

def _cmd_synth(args: argparse.Namespace) -> int:
    from paw_ray.config import RayConfig
    from paw_ray.data.synthfaces import synthesize
    from paw_ray.train.cluster import ensure_ray

    if args.tasks != 1:  # Ray tasks render: a Ray started as train starts it, its own lines kept out
        ensure_ray(RayConfig())
    info = synthesize(n=args.n, size=args.size, seed=args.seed, out=args.out,
                      label_noise=args.label_noise, num_tasks=args.tasks,
                      progress=lambda line: _stderr(f"paw-ray synth: {line}"))
    print(json.dumps({"out": args.out, "num_rows": info.num_rows, "image_size": info.image_size}))
    return 0


def _cmd_prepare_celeba(args: argparse.Namespace) -> int:
    from paw_ray.data.celeba import prepare_celeba

    info = prepare_celeba(root=args.root, out=args.out, aligned=args.aligned,
                          allow_partial=args.allow_partial, image_size=args.size,
                          margin=args.margin, limit=args.limit, split_fraction=args.split_fraction,
                          face_source=args.face_source, detection=detection_from_args(args))
    print(json.dumps({"out": args.out, "num_rows": info.num_rows, "image_size": info.image_size}))
    return 0


# --------------------------------------------------------------------------- models

def _cmd_models(args: argparse.Namespace) -> int:
    from paw_ray.models.summary import format_model_summary, model_summary

    summary = model_summary(config_from_args(args))
    print(json.dumps(summary, indent=1) if args.json else format_model_summary(summary))
    return 0


# --------------------------------------------------------------------------- training

def train_config(args: argparse.Namespace):
    """``config_from_args``, then the run flags ``--data``, ``--max-steps`` and ``--address``."""
    from paw_ray import config as C

    cfg = config_from_args(args)
    if args.data:
        cfg.data.path = args.data
    if args.max_steps is not None:
        cfg.max_steps = args.max_steps
    if args.address:
        cfg.ray.address = args.address
    if args.mlflow:
        cfg.tracking.mlflow = args.mlflow
    if args.verify_data:
        cfg.data.verify = "full"
    if args.accept_data_change:
        cfg.data.on_change = "accept"
    C.validate(cfg)
    return cfg


def _cmd_train(args: argparse.Namespace) -> int:
    from paw_ray.train.run import parse_stages, train
    from paw_ray.train.stages.evaluate import pointing_scope

    cfg = train_config(args)
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
            print(f"  FRL pointing accuracy on local attributes ({pointing_scope(loc)}): {100 * loc['mean']:.1f}% "
                  f"(a random centre: {100 * loc['chance_mean']:.1f}%)")
        print(f"Full table: {run_dir}/results.md")
    print(f"Run directory: {run_dir}")
    report_after_train(run_dir)
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from paw_ray.train.tune import format_tune_summary, load_space, run_tune

    cfg = train_config(args)
    run_dir = args.run_dir or f"runs/{cfg.preset}"
    space = load_space(args.space, cfg, args.stage) if args.space else None
    summary = run_tune(cfg, run_dir, args.stage, num_samples=args.num_samples, scheduler=args.scheduler,
                       space=space, max_concurrent=args.max_concurrent)
    print()
    print(format_tune_summary(summary))
    print(f"Best configuration: {summary['best_yaml']}")
    print(f"  reuse it: paw-ray train --preset {cfg.preset} --set-from {summary['best_yaml']} --run-dir {run_dir}")
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from paw_ray.train.ablate import ablate, format_ablations

    cfg = train_config(args)
    run_dir = args.run_dir or f"runs/ablate-{cfg.preset}"
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    summary = ablate(cfg, run_dir, seeds=args.seeds, variants=variants, reuse=args.reuse or [])
    print()
    print(format_ablations(summary))
    print(f"Written: {run_dir}/ablations.json, {run_dir}/ablations.md")
    return 0


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """Where a pipeline command runs: data, run directory, dry-run steps, cluster."""
    p.add_argument("--data", metavar="DIR", help="prepared shards (default: SynthFaces rendered for the preset)")
    p.add_argument("--run-dir", metavar="DIR", help="run directory, local or URI (default: runs/<preset>)")
    p.add_argument("--max-steps", type=int, metavar="N",
                   help="dry run: one epoch of at most N steps per stage")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--mlflow", metavar="URI",
                   help="also log every epoch to this MLflow tracking URI, e.g. http://127.0.0.1:5000 or "
                        "sqlite:///$PWD/mlflow.db (needs the mlflow extra)")
    p.add_argument("--verify-data", action="store_true",
                   help="check every shard's SHA-256 against dataset.json before any stage (default: sizes, "
                        "and hashes for data sets up to 2 GiB)")
    p.add_argument("--accept-data-change", action="store_true",
                   help="a shard changed in place since the data was prepared: record it as it is now and rerun "
                        "the stages that read the data (default: stop, naming the shard)")


# --------------------------------------------------------------------------- outputs

def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def report_after_train(run_dir: str) -> None:
    """The run's report at the end of `paw-ray train`; a failure is a warning, never a lost run."""
    try:
        from paw_ray.eval.report import write_report  # matplotlib and the figures: inside the guard too

        print(f"Report: {write_report(run_dir, log=_stderr)}")
    except Exception as e:  # noqa: BLE001 - the run itself is complete and saved
        _stderr(f"paw-ray train: warning: the run is complete but its report failed "
                f"({type(e).__name__}: {e}); retry with: paw-ray report --run-dir {run_dir}")


def _cmd_report(args: argparse.Namespace) -> int:
    from paw_ray.eval.report import write_report

    print(write_report(args.run_dir, args.out, log=_stderr))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from paw_ray.attributes import attribute_index
    from paw_ray.train.trained_run import open_run
    from paw_ray.serve.model_folder import open_model_folder
    from paw_ray.serve.predict import Predictor, parse_box, read_boxes_csv, write_csv, write_explanation, write_jsonl

    box = parse_box(args.box) if args.box else None
    boxes = read_boxes_csv(args.boxes) if args.boxes else None
    try:
        explain_attrs = [attribute_index(a.strip()) for a in args.explain_attributes.split(",") if a.strip()]
    except KeyError as e:
        raise PawRayError(f"--explain-attributes: {e.args[0]}") from None
    fmt = args.format or ("csv" if (args.out or "").lower().endswith(".csv") else "jsonl")
    run = open_model_folder(args.model) if args.model else open_run(args.run_dir)
    predictor = Predictor(run, box, boxes, split=args.split, batch_size=args.batch_size,
                          explain=bool(args.explain), decision_rule=args.decision_rule, detect=args.detect,
                          detection=detection_from_args(args), face_margin=args.face_margin)
    preds = predictor.predict(args.inputs, progress=lambda line: _stderr(f"paw-ray predict: {line}"))
    if args.explain:
        def explained(preds):
            for i, p in enumerate(preds):
                write_explanation(p, args.explain, i, explain_attrs, run.label())
                yield p
        preds = explained(preds)
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    try:
        n = (write_csv if fmt == "csv" else write_jsonl)(preds, out)
    finally:
        if args.out:
            out.close()
    for note in predictor.notes:
        _stderr(f"paw-ray predict: note: {note}")
    for error in predictor.errors:
        _stderr(f"paw-ray predict: error: {error}")
    _stderr(f"paw-ray predict: {n} image(s) predicted" + (f" -> {args.out}" if args.out else "")
            + (f"; overlays in {args.explain}" if args.explain else "")
            + (f"; {len(predictor.errors)} input(s) failed" if predictor.errors else ""))
    return 1 if predictor.errors or n == 0 else 0


def detection_from_args(args: argparse.Namespace):
    from paw_ray.data.detect import FaceDetection

    try:
        return FaceDetection(min_face=args.min_face, threshold=args.detect_threshold)
    except ValueError as e:
        raise PawRayError(f"--min-face / --detect-threshold: {e}") from None


def add_detection_args(p: argparse.ArgumentParser) -> None:
    from paw_ray.data.detect import FaceDetection

    default = FaceDetection()
    p.add_argument("--min-face", type=int, default=default.min_face, metavar="PX",
                   help=f"smallest face side the detector finds, in pixels (default {default.min_face})")
    p.add_argument("--detect-threshold", type=float, default=default.threshold, metavar="SCORE",
                   help=f"detector score a face must exceed; higher finds fewer false faces "
                        f"(default {default.threshold:g})")


def _cmd_export(args: argparse.Namespace) -> int:
    from paw_ray.serve.export import export_cascade
    from paw_ray.serve.model_folder import export_folder

    if args.format == "folder":
        written = export_folder(args.run_dir, args.out, decision_rule=args.decision_rule, log=_stderr)
    else:
        written = export_cascade(args.run_dir, args.format, args.out, decision_rule=args.decision_rule, log=_stderr)
    print(json.dumps(written, indent=1))
    return 0


def _add_model_source(p: argparse.ArgumentParser) -> None:
    """Where a trained model comes from: a run directory or a model folder, one of them."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", metavar="DIR", help="a finished run directory")
    source.add_argument("--model", metavar="DIR", help="a model folder (paw-ray export --format folder)")


def _add_decision_rule(p: argparse.ArgumentParser) -> None:
    p.add_argument("--decision-rule", default="fitted", choices=DECISION_RULES,
                   help="fitted: the temperature and threshold per attribute that evaluate fitted on the "
                        "validation split (default); fixed: probability > 0.5")


def _add_face_margin(p: argparse.ArgumentParser) -> None:
    p.add_argument("--face-margin", type=float, metavar="M",
                   help="face-box margin for a detected face, as a share of its side (default: the margin "
                        "the run's training faces were cut with)")


def _add_output_parsers(sub) -> None:
    p = sub.add_parser("report", help="HTML report with the paper's figures for a run directory",
                       description="Write <run-dir>/report/index.html and its PNG figures: accuracy per "
                                   "attribute (Table 5), heatmaps and part boxes (Fig. 4), RSL weights (Fig. 5), "
                                   "the ARL matrix (Fig. 6), training curves, SynthFaces pointing accuracy.")
    p.add_argument("--run-dir", required=True, metavar="DIR", help="a run directory of `paw-ray train`")
    p.add_argument("--out", metavar="DIR", help="report folder (default: <run-dir>/report)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("predict", help="attribute probabilities and part boxes for images",
                       description="Run a trained cascade on image files, folders of images or prepared shard "
                                   "folders (their --split rows). Without --box/--boxes the faces in each photo "
                                   "are found by a detector, one prediction per face (--detect none: the whole "
                                   "photo is the face). Exit status 1 if any input could not be read or held "
                                   "no face.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, folder of images, or shard folder")
    _add_model_source(p)
    p.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    p.add_argument("--format", choices=["jsonl", "csv"],
                   help="output format (default: csv for a .csv --out, else jsonl)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--box", metavar="X,Y,W,H", help="face box in pixels, for every input image")
    g.add_argument("--boxes", metavar="CSV", help="face boxes per image: lines of image name,x,y,w,h")
    p.add_argument("--detect", default="auto", choices=["auto", "none"],
                   help="auto: find the faces in a photo given no box (default); none: take the whole photo "
                        "as the face")
    add_detection_args(p)
    _add_face_margin(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"],
                   help="rows of a shard folder input to predict (default: test)")
    p.add_argument("--explain", metavar="DIR", help="write an overlay PNG per image into DIR")
    p.add_argument("--explain-attributes", default="Smiling,Eyeglasses,Wearing_Hat", metavar="LIST",
                   help="attributes whose heatmaps --explain draws (default: Smiling,Eyeglasses,Wearing_Hat)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    _add_decision_rule(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="export the cascade as one TorchScript or ONNX model, or a model folder",
                       description="torchscript, onnx: the cascade (FRL localisation, crops, PaW) as one model on "
                                   "uint8 (B, 3, S, S) faces giving probabilities and part boxes, checked against "
                                   "PyTorch, with model.json and MODEL_CARD.md. folder: model.safetensors, "
                                   "config.json and README.md, which `paw-ray predict --model` loads alone.")
    p.add_argument("--run-dir", required=True, metavar="DIR", help="a finished run directory")
    p.add_argument("--format", required=True, choices=["torchscript", "onnx", "folder"])
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: <run-dir>/export, for folder <run-dir>/export/model)")
    _add_decision_rule(p)
    p.set_defaults(func=_cmd_export)


def _cmd_serve(args: argparse.Namespace) -> int:
    from paw_ray.serve.http import run_service  # imports Ray Serve: only when serving

    given = {"run_dir": args.run_dir, "model": args.model, "decision_rule": args.decision_rule,
             "min_face": args.min_face, "detect_threshold": args.detect_threshold, "face_margin": args.face_margin,
             "num_replicas": args.num_replicas, "num_cpus": args.num_cpus, "num_gpus": args.num_gpus,
             "max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.batch_wait_timeout,
             "max_request_bytes": args.max_request_bytes}
    run_service({k: v for k, v in given.items() if v is not None}, args.host, args.port, args.address or "",
                log=_stderr)
    return 0


def _add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="answer HTTP requests with a Ray Serve application",
                       description="Deploy the cascade on Ray Serve (a local Ray, or --address): POST an image to "
                                   "/predict (raw body or a multipart 'image' upload; ?detect=none takes the whole "
                                   "image as the face) for the rows `paw-ray predict` writes for it, as JSON with "
                                   "the model's identity; GET /healthz, /readyz, /stats. Requests are batched per "
                                   "replica. Runs until Ctrl-C.")
    _add_model_source(p)
    p.add_argument("--host", default="127.0.0.1", help="address the HTTP proxy binds (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    _add_decision_rule(p)
    add_detection_args(p)
    _add_face_margin(p)
    p.add_argument("--num-replicas", type=int, metavar="N", help="replicas, each with the model loaded (default 1)")
    p.add_argument("--num-cpus", type=float, metavar="C", help="CPUs per replica (default 1)")
    p.add_argument("--num-gpus", type=float, metavar="G", help="GPUs per replica (default 0)")
    p.add_argument("--max-batch-size", type=int, metavar="N", help="requests per forward pass at most (default 8)")
    p.add_argument("--batch-wait-timeout", type=float, metavar="S",
                   help="seconds a batch waits for more requests (default 0.01)")
    p.add_argument("--max-request-bytes", type=int, metavar="B",
                   help="larger request bodies are refused with 413 (default 20 MiB)")
    p.set_defaults(func=_cmd_serve)


# --------------------------------------------------------------------------- parser

def package_version() -> str:
    """The installed distribution's version; ``paw_ray.__version__`` (which pyproject.toml
    reads at install time) when running from a checkout that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("paw_ray")
    except PackageNotFoundError:
        from paw_ray import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The ``paw-ray`` parser: one subcommand per capability."""
    return _parser_and_subcommands()[0]


def subcommand_parser(name: str, prog: str) -> argparse.ArgumentParser:
    """The parser of one subcommand alone, named ``prog``: what a job entrypoint
    (``jobs/<name>.py``) parses, so that its options and checks are the subcommand's."""
    p = _parser_and_subcommands()[1].choices[name]
    p.prog = prog
    return p


def _parser_and_subcommands():
    parser = argparse.ArgumentParser(
        prog="paw-ray",
        description="PaW cascade face-attribute network (Ding et al., AAAI 2018) on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_parsers(sub)
    _add_training_parsers(sub)
    _add_experiment_parsers(sub)
    _add_output_parsers(sub)
    _add_serve_parser(sub)
    return parser, sub


def _add_data_parsers(sub) -> None:
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
    p.add_argument("--face-source", default="annotations", choices=["annotations", "detector"],
                   help="annotations: cut each in-the-wild face from list_bbox_celeba, else the landmarks' box "
                        "(default); detector: where the face detector finds it, as the paper did, falling "
                        "back to the annotations")
    add_detection_args(p)
    p.add_argument("--limit", type=int, default=0, help="only the first N images (0 = all)")
    p.add_argument("--split-fraction", metavar="TRAIN,VAL,TEST",
                   help="split by image id in these shares, e.g. 0.8,0.1,0.1, instead of CelebA's partition "
                        "file (for a data set without one); recorded in dataset.json")
    p.set_defaults(func=_cmd_prepare_celeba)


def _add_training_parsers(sub) -> None:
    p = sub.add_parser("models", help="parameter counts and output shapes of every network")
    _add_config_args(p, default_preset="paper")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("train", help="run the training pipeline (the main job)",
                       description=f"Run {', '.join(STAGES)} on a "
                                   "Ray cluster (a local one when no address is given). Stages complete "
                                   "for the same config in --run-dir are reused.")
    _add_config_args(p, default_preset="demo")
    p.add_argument("--set-from", metavar="FILE", help="YAML written by `paw-ray tune` (best config)")
    _add_run_args(p)
    p.add_argument("--stages", metavar="LIST", help="run exactly these stages (comma-separated), forced")
    p.add_argument("--from-stage", metavar="STAGE",
                   help="rerun this stage and every stage after it (with new --data, localize reruns too)")
    p.set_defaults(func=_cmd_train)


def _add_experiment_parsers(sub) -> None:
    p = sub.add_parser("tune", help="search a stage's hyperparameters with Ray Tune",
                       description="Ray Tune over one Ray Train stage: each trial a TorchTrainer run; the "
                                   "upstream stages are run or reused from --run-dir first. Writes "
                                   "<run-dir>/tune/<stage>/{summary.json,summary.md,best.yaml}.")
    _add_config_args(p, default_preset="demo")
    _add_run_args(p)
    p.add_argument("--stage", required=True, choices=TRAIN_STAGES,
                   help="the stage to tune")
    p.add_argument("--num-samples", type=int, default=4, metavar="N", help="trials to run (default 4)")
    p.add_argument("--scheduler", default="asha", choices=["asha", "fifo"],
                   help="asha: stop weak trials early at rungs (default); fifo: run every trial to its end")
    p.add_argument("--space", metavar="FILE",
                   help="search space, YAML/JSON: key: {loguniform|uniform|randint|choice|grid: [...]} "
                        "(default: lr, weight_decay, batch_size around the preset)")
    p.add_argument("--max-concurrent", type=int, default=0, metavar="K",
                   help="at most K trials at once (default and upper bound: what the cluster's CPUs/GPUs fit)")
    p.set_defaults(func=_cmd_tune)

    from paw_ray.train.ablate import VARIANTS

    p = sub.add_parser("ablate", help="the paper's ablations: MNL, student size, fixed-grid parts",
                       description="Train the paper's design and one variant per switch (" + ", ".join(
                           f"{v.name}: {v.change or 'paper design'}" for v in VARIANTS.values())
                       + ") for each seed; a stage two variants share is trained once. Writes "
                         "<run-dir>/ablations.json and ablations.md (default --run-dir: runs/ablate-<preset>); "
                         "rerun with the same --run-dir to continue.")
    _add_config_args(p, default_preset="demo")
    _add_run_args(p)
    p.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="seeds 0..K-1; seed k sets seed and data.synth_seed (default 1)")
    p.add_argument("--variants", metavar="LIST", help=f"comma-separated subset of {','.join(VARIANTS)} (default: all)")
    p.add_argument("--reuse", metavar="RUN_DIR", action="append",
                   help="a finished run directory (e.g. the main job's) whose stages a variant adopts where "
                        "preset, seed and data match; repeatable")
    p.set_defaults(func=_cmd_ablate)


def run_parsed(args: argparse.Namespace, prog: str) -> int:
    """Run a parsed subcommand: its exit status; a ``PawRayError`` as one line naming the
    input and the problem (exit 2), never a traceback."""
    try:
        return int(args.func(args) or 0)
    except PawRayError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_parsed(args, f"paw-ray {args.command}")


if __name__ == "__main__":
    sys.exit(main())
