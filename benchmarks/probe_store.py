"""What a store's raw features carry: linear probes for the actions and every private attribute.

Reads the store as ``extract`` wrote it (any encoder), fits a logistic regression on the
training videos' clips (train + val splits, at most ``--clips`` per video, evenly spaced)
and scores the test videos' clips, video-split as ``eval`` does:

- action: clip top-1 and video top-1 (mean of a video's clip probabilities), AR videos;
- each static attribute from static clips and from ordinary clips, each temporal attribute
  (gait) from ordinary clips; every figure against chance (the test split's majority class).

With ``--streams`` the probes also run on column groups of the feature: for the ``onnx``
encoders with a motion stream (``opennsfw``), the frame-mean appearance part and the
feature-flow part (``motion``), which tells which stream carries what. The store's private
labels are read, never written; nothing here trains the AAM.

    python benchmarks/probe_store.py --store aamflow-demo/features-opennsfw.zarr --streams
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

OPENNSFW_APPEARANCE = 1024  # opennsfw's Reshape:0; the rest is its flow stream
CELL_STATS = 15  # cell flow: per cell, 3 signals (u, v, energy) x 5 statistics


def streams(store: Any, split: int | None) -> dict[str, Any]:
    """Column groups: the whole vector and, split at ``split`` (opennsfw: 1024), the frame-mean
    appearance stream and the feature-flow stream of a two-stream onnx store, and the flow
    stream's parts: for the ``cells`` flow (``opennsfw``'s), the x/y motion and the energy
    of every cell; for the ``channels`` flow, signed x and y motion, energy and its temporal
    harmonic (see ``stages/extract/encoders/onnx_.py``)."""
    dim = store.feature_dim
    out: dict[str, Any] = {"all": np.arange(dim)}
    if split is None and (store.encoder or {}).get("name") == "opennsfw":
        split = OPENNSFW_APPEARANCE
    if not split or not 0 < split < dim:
        return out
    out["appearance"] = np.arange(split)
    out["motion"] = np.arange(split, dim)
    pooling = (store.encoder or {}).get("preprocessing", {}).get("pooling")
    width = dim - split
    if pooling == "mean+cellflow" and width % CELL_STATS == 0:
        within = np.arange(width) % CELL_STATS
        out["motion x,y"] = split + np.flatnonzero(within < 10)
        out["motion energy"] = split + np.flatnonzero(within >= 10)
    elif width % 4 == 0:
        c = width // 4
        out["motion x,y"] = np.arange(split, split + 2 * c)
        out["motion energy"] = np.arange(split + 2 * c, split + 3 * c)
        out["energy harmonic"] = np.arange(split + 3 * c, dim)
    return out


def probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, Any]:
    """Predicted classes of a standardised L2 logistic regression on the test rows, and it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.5))
    clf.fit(x_train, y_train)
    return clf.classes_[clf.predict_proba(x_test).argmax(1)], clf


def measure(store: Any, cols: Any, clips: int) -> dict[str, Any]:
    from aamflow.stages.eval.data import TEST_SPLITS, TRAIN_SPLITS, gather, select_videos

    videos = store.videos
    rows: dict[str, Any] = {}

    def split(array: str, labelled: str, task: str | None = None) -> tuple[Any, ...]:
        tr = select_videos(store, splits=TRAIN_SPLITS, task=task, labelled=labelled)
        te = select_videos(store, splits=TEST_SPLITS, task=task, labelled=labelled)
        needs = {"static_features": "static_count", "clip_features": "clip_count"}[array]
        tr, te = tr[tr[needs] > 0], te[te[needs] > 0]
        x_tr, o_tr = gather(store, array, tr, limit=clips)
        x_te, o_te = gather(store, array, te, limit=clips)
        y_tr = videos[labelled].loc[o_tr].to_numpy()
        y_te = videos[labelled].loc[o_te].to_numpy()
        return x_tr[:, cols], y_tr, x_te[:, cols], y_te, o_te

    def chance(y: np.ndarray) -> float:
        return float(np.bincount(y).max() / len(y)) if len(y) else float("nan")

    x_tr, y_tr, x_te, y_te, owner = split("clip_features", "label_action", task="ar")
    pred, clf = probe(x_tr, y_tr, x_te)
    proba = clf.predict_proba(x_te)
    vids = np.unique(owner)
    video_pred = [clf.classes_[proba[owner == v].mean(0).argmax()] for v in vids]
    video_truth = videos["label_action"].loc[vids].to_numpy()
    rows["action (clips)"] = (float((pred == y_te).mean()), chance(y_te))
    rows["action (videos)"] = (
        float((np.array(video_pred) == video_truth).mean()),
        chance(video_truth),
    )
    spaces = store.label_spaces
    for name in spaces.all_attributes():
        column = f"label_attr_{name}"
        if column not in videos.columns:
            continue
        sources = ["static_features", "clip_features"] if name in spaces.attributes else []
        sources = sources or ["clip_features"]
        for array in sources:
            x_tr, y_tr, x_te, y_te, _ = split(array, column)
            if len(np.unique(y_tr)) < 2 or not len(y_te):
                continue
            pred, _ = probe(x_tr, y_tr, x_te)
            where = "static" if array == "static_features" else "clips"
            rows[f"{name} ({where})"] = (float((pred == y_te).mean()), chance(y_te))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=8, help="clips per video (evenly spaced)")
    ap.add_argument("--streams", action="store_true", help="also probe each stream alone")
    ap.add_argument("--split", type=int, default=None, help="first column of the second stream")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from aamflow.schemas.store import open_store

    store = open_store(args.store)
    groups = streams(store, args.split) if args.streams else {"all": np.arange(store.feature_dim)}
    results = {g: measure(store, cols, args.clips) for g, cols in groups.items()}
    names = list(results["all"])
    enc = (store.encoder or {}).get("name")
    print(f"\nlinear probes on {args.store} ({enc}, {store.feature_dim}-d): accuracy / chance")
    head = [f"{g} ({len(cols)}-d)" for g, cols in groups.items()]
    print("| probe | " + " | ".join(head) + " |")
    print("| --- |" + " --- |" * len(groups))
    for n in names:
        cells = [f"{100 * results[g][n][0]:.1f} / {100 * results[g][n][1]:.1f}" for g in groups]
        print(f"| {n} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"store": str(args.store), "results": results}, indent=2))


if __name__ == "__main__":
    main()
