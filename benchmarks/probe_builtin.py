"""Measure what the ``builtin`` encoder's features carry on the synthetic demo corpus.

Generates the corpus (timed), decodes the trimmed AR videos with PyAV, encodes
non-overlapping 16-frame clips and ``static_per_video`` static clips (one frame tiled) per
video, and fits linear probes (logistic regression) on the manifest's train split, scored
on its test split: action (clip and video-mean), each static attribute (from static clips
and from ordinary clips) and gait (from walking clips), each against chance (the majority
class of the test split). Also reports encoder throughput on CPU.

    python benchmarks/probe_builtin.py [--out /tmp/aamflow_probe] [--threads 2] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch


def decode(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def encode_all(enc, clips: list[np.ndarray], batch: int = 64) -> tuple[np.ndarray, dict]:
    """Encode clips; returns features and timings (preprocess and encode separately)."""
    feats, t_pre, t_enc, cpu_enc = [], 0.0, 0.0, 0.0
    for i in range(0, len(clips), batch):
        t0 = time.perf_counter()
        x = torch.stack([enc.preprocess(c) for c in clips[i : i + batch]])
        t1, c1 = time.perf_counter(), time.process_time()
        feats.append(enc.encode(x).numpy())
        t_enc += time.perf_counter() - t1
        cpu_enc += time.process_time() - c1
        t_pre += t1 - t0
    n = len(clips)
    return np.concatenate(feats), {
        "clips": n,
        "preprocess_clips_per_s": n / t_pre,
        "encode_clips_per_s": n / t_enc,
        "encode_clips_per_cpu_s": n / cpu_enc,
    }


def probe(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
    clf.fit(X[train], y[train])
    _, counts = np.unique(y[test], return_counts=True)
    return clf, float((clf.predict(X[test]) == y[test]).mean()), float(counts.max() / counts.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/aamflow_probe"))
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="store_true", help="keep an existing corpus in --out")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from aamflow.schemas.manifest import load_manifest
    from aamflow.stages.extract.encoders import create_encoder
    from aamflow.stages.synth import SynthConfig, run_synth

    result: dict = {"preset": args.preset, "seed": args.seed, "threads": args.threads}
    manifest_path = args.out / "data_manifest.yaml"
    if not (args.reuse and manifest_path.is_file()):
        shutil.rmtree(args.out, ignore_errors=True)
        t0, c0 = time.perf_counter(), time.process_time()
        run_synth(SynthConfig(out=args.out, preset=args.preset, seed=args.seed, quiet=True))
        result["synth_wall_s"] = round(time.perf_counter() - t0, 1)
        result["synth_parent_cpu_s"] = round(time.process_time() - c0, 1)
    m = load_manifest(manifest_path)
    S, L = m.sampling.static_per_video, m.sampling.clip_len
    videos = [v for v in m.videos if v.task == "ar" and v.subset == "main"]

    clips, cvid, statics, svid = [], [], [], []
    for i, v in enumerate(videos):
        fr = decode(v.abspath(m))
        for s in range(0, len(fr) - L + 1, m.sampling.clip_stride):
            clips.append(fr[s : s + L])
            cvid.append(i)
        for k in np.linspace(0, len(fr) - 1, S).round().astype(int):
            statics.append(np.repeat(fr[k][None], L, 0))
            svid.append(i)
    cvid, svid = np.array(cvid), np.array(svid)

    enc = create_encoder("builtin")
    Xc, speed = encode_all(enc, clips)
    Xs, _ = encode_all(enc, statics)
    result["encoder"] = {"dim": enc.identity.dim, **{k: round(v, 1) for k, v in speed.items()}}

    split = np.array([v.split for v in videos])
    label = {
        k: np.array([getattr(v, k) if k == "action" else v.attributes[k] for v in videos])
        for k in ("action", *m.label_spaces.all_attributes())
    }
    ctr, cte = split[cvid] == "train", split[cvid] == "test"
    str_, ste = split[svid] == "train", split[svid] == "test"
    rows = {}

    clf, acc, chance = probe(Xc, label["action"][cvid], ctr, cte)
    # video-level: mean clip probability per test video
    proba = clf.predict_proba(Xc[cte])
    test_videos = np.unique(cvid[cte])
    pred = [clf.classes_[proba[cvid[cte] == v].mean(0).argmax()] for v in test_videos]
    vacc = float((np.array(pred) == label["action"][test_videos]).mean())
    rows["action"] = {"clip": acc, "video": vacc, "chance": chance}
    for name in m.label_spaces.attributes:
        _, a_static, chance = probe(Xs, label[name][svid], str_, ste)
        _, a_clip, _ = probe(Xc, label[name][cvid], ctr, cte)
        rows[name] = {"static": a_static, "clip": a_clip, "chance": chance}
    walking = np.isin(label["action"][cvid], ["walk_left", "walk_right"])
    for name in m.label_spaces.temporal_attributes:
        _, a_all, chance_all = probe(Xc, label[name][cvid], ctr, cte)
        _, a_walk, chance_walk = probe(Xc, label[name][cvid], ctr & walking, cte & walking)
        rows[name] = {
            "clip": a_all,
            "chance": chance_all,
            "walking_clip": a_walk,
            "walking_chance": chance_walk,
        }
    result["probes"] = {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in rows.items()}
    result["counts"] = {
        "videos": len(videos),
        "clips_train": int(ctr.sum()),
        "clips_test": int(cte.sum()),
        "static_train": int(str_.sum()),
        "static_test": int(ste.sum()),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
