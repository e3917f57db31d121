"""Exports read back with small loaders written from each tool's own conventions.

The loaders mirror what the tools do with the files (ActionFormer ``libs/datasets/thumos14.py``,
OpenTAD ``PaddingDataset`` + ``ThumosPaddingDataset.get_gt``, RTFM / MGFN ``dataset.py`` +
``test.py``, UR-DMU ``dataset_loader.UCF_crime`` + ``ucf_test.py``), so a broken convention
(T off by one, lists out of order, GT misaligned) fails here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from aamflow.pipeline.cli import cli
from aamflow.schemas._registry import UnknownNameError
from aamflow.schemas.errors import ConfigError
from aamflow.schemas.fake import FAKE_SPACES
from aamflow.schemas.manifest import Sampling
from aamflow.schemas.store import (
    VideoRecord,
    create_store,
    index_store,
    new_store_attrs,
    open_part_writer,
    open_store,
    plan_parts,
)
from aamflow.stages.export import MARKER, ExportConfig, run_export
from aamflow.stages.extract.sampling import plan_clips

FPS = 16.0
DIM = 8
SAMPLING = Sampling(clip_len=16, frame_stride=1, clip_stride=16, dense_stride=4)
ACTIONS = FAKE_SPACES.actions  # walk, jump, wave, spin

# id, task, split, frames, segments (label, start s, end s) | abnormal frames [a, b) | None
VIDEOS = [
    ("tad_a", "tad", "train", 100, [("jump", 1.0, 2.5), ("spin", 3.0, 5.0)]),
    ("tad_b", "tad", "val", 64, [("walk", 0.5, 1.5)]),
    ("tad_c", "tad", "test", 120, [("jump", 2.0, 4.0)]),
    ("tad_short", "tad", "test", 10, []),  # shorter than a clip: one padded clip
    ("tad_broken", "tad", "train", -1, []),  # failed to decode
    ("ar_0", "ar", "train", 48, None),
    ("ad_n1", "ad", "train", 80, None),
    ("ad_a1", "ad", "train", 96, (40, 70)),
    ("ad_n2", "ad", "val", 64, None),
    ("ad_Normalish", "ad", "train", 70, (10, 30)),  # abnormal, "Normal" in its id
    ("ad_t1", "ad", "test", 100, (30, 60)),
    ("ad_t2", "ad", "test", 72, None),
    ("ad_t3", "ad", "test", 50, (0, 20)),
    ("ad_broken", "ad", "test", -1, None),
]


def _record(row: int, spec: tuple, rng: np.random.Generator) -> VideoRecord:
    vid, task, split, frames, extra = spec
    labels = {"label_attr_skin_tone": 0, "label_attr_gender": 1, "label_group": 1}
    if task == "ar":
        labels["label_action"] = 2
    if task == "ad":
        labels["label_anomaly"] = int(extra is not None)
    rec = VideoRecord(row=row, id=vid, path=f"v/{vid}.mp4", split=split, task=task, labels=labels)
    if frames < 0:
        rec.status, rec.error = "failed", "moov atom not found"
        return rec
    plan = plan_clips(frames, SAMPLING, task)
    bounds = np.stack([plan.start, plan.end], 1)
    rec.num_frames, rec.fps, rec.duration = frames, FPS, frames / FPS
    rec.clip_features = rng.normal(size=(plan.num_clips, DIM)).astype(np.float32)
    rec.clip_frames, rec.clip_time = bounds, bounds / FPS
    rec.clip_frame_idx, rec.clip_padded = plan.frame_idx, plan.padded
    rec.static_features = rng.normal(size=(2, DIM)).astype(np.float32)
    rec.static_frame = np.array([0, frames - 1])
    if task == "tad":
        rec.segments = [(ACTIONS.index(lab), s, e) for lab, s, e in extra]
    if task == "ad":
        rec.frame_labels = np.zeros(frames, np.int8)
        if extra is not None:
            rec.frame_labels[extra[0] : extra[1]] = 1
    return rec


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "features.zarr"
    plan = plan_parts(len(VIDEOS), 6)
    encoder = {"name": "fake", "dim": DIM, "weights_digest": "sha256:fake"}
    create_store(
        path,
        new_store_attrs(encoder=encoder, sampling=SAMPLING, label_spaces=FAKE_SPACES, plan=plan),
    )
    rng = np.random.default_rng(0)
    for part in plan:
        with open_part_writer(path, part) as writer:
            for row in range(part.start, part.stop):
                writer.add(_record(row, VIDEOS[row], rng))
            writer.commit()
    index_store(path)
    return path


@pytest.fixture(scope="module")
def stored(store: Path) -> dict[str, dict]:
    """Per video id: its clip features, clip frame indices and frame labels, read back."""
    with open_store(store) as s:
        idx = s.read("clip_frame_idx")
        out = {}
        for _, v in s.videos.iterrows():
            view = s.video(int(v["row"]))
            start, n = int(v["clip_start"]), int(v["clip_count"])
            out[view.id] = {
                "feats": view.clip_features,
                "frame_idx": idx[start : start + n],
                "frame_labels": view.frame_labels,
                "clip_frames": view.clip_frames,
            }
        return out


def export(store: Path, fmt: str, out: Path, **kw) -> dict:
    return run_export(ExportConfig(store=store, fmt=fmt, out=out, quiet=True, **kw))


def expected_gt(video: dict) -> np.ndarray:
    """The frames each clip was decoded from, 16 labels per clip, clip after clip."""
    labels = video["frame_labels"]
    return (labels[video["frame_idx"]] > 0).astype(np.float32).reshape(-1)


# ------------------------------------------------------------------------ ActionFormer / OpenTAD


def load_actionformer(root: Path, split: tuple[str, ...], cfg: dict) -> list[dict]:
    """``THUMOS14Dataset._load_json_db`` + ``__getitem__``, without torch."""
    db = json.loads((root / "annotations/thumos14.json").read_text())["database"]
    label_dict = {a["label"]: a["label_id"] for v in db.values() for a in v["annotations"]}
    assert len(label_dict) == cfg["num_classes"]  # ActionFormer asserts this
    items = []
    for key, value in db.items():
        if value["subset"].lower() not in split:
            continue
        feat_file = os.path.join(root / "features", key + ".npy")
        if not os.path.exists(feat_file):
            continue
        feats = np.load(feat_file).astype(np.float32)
        segs = np.asarray([a["segment"] for a in value["annotations"]], np.float32).reshape(-1, 2)
        grid = (segs * value["fps"] - 0.5 * cfg["num_frames"]) / cfg["feat_stride"]
        labels = [label_dict[a["label"]] for a in value["annotations"]]
        items.append({"id": key, "feats": feats, "segments": grid, "labels": labels})
    return items


def load_opentad(root: Path, subset_name: str) -> list[tuple[str, np.ndarray, list[int]]]:
    """``PaddingDataset.get_dataset`` + ``ThumosPaddingDataset.get_gt`` (frames, class index)."""
    db = json.loads((root / "annotations/thumos_14_anno.json").read_text())["database"]
    blocked = (root / "features/missing_files.txt").read_text().splitlines()
    class_map = (root / "annotations/category_idx.txt").read_text().splitlines()
    out = []
    for name, info in db.items():
        if name in blocked or info["subset"] not in subset_name:
            continue
        segs, labels = [], []
        for anno in info["annotations"]:
            segs.append(
                [
                    int(anno["segment"][0] / info["duration"] * info["frame"]),
                    int(anno["segment"][1] / info["duration"] * info["frame"]),
                ]
            )
            labels.append(class_map.index(anno["label"]))
        if segs:  # OpenTAD drops videos without ground truth outside test mode
            out.append((name, np.asarray(segs, np.float32), labels))
    return out


def test_actionformer_layout_reads_back_with_t_exact(store, stored, tmp_path):
    record = export(store, "actionformer", tmp_path / "af")
    cfg = record["summary"]
    root = tmp_path / "af"
    assert (cfg["feat_stride"], cfg["num_frames"], cfg["offset_frames"]) == (4, 16, 8)
    assert cfg["input_dim"] == DIM and cfg["classes"] == ["walk", "jump", "spin"]

    train = load_actionformer(root, ("validation",), cfg)
    test = load_actionformer(root, ("test",), cfg)
    assert [i["id"] for i in train] == ["tad_a", "tad_b"]  # train + val; failed one is missing
    assert [i["id"] for i in test] == ["tad_c", "tad_short"]
    for item in train + test:
        ref = stored[item["id"]]
        assert item["feats"].dtype == np.float32 and item["feats"].shape == ref["feats"].shape
        np.testing.assert_array_equal(item["feats"], ref["feats"])  # T exact, order kept
        # the declared geometry is the stored one: clip i is centred on i*stride + offset
        centres = ref["clip_frames"][:, 0] + cfg["num_frames"] / 2
        t = np.arange(len(centres))
        np.testing.assert_allclose(centres, t * cfg["feat_stride"] + cfg["offset_frames"])
    assert test[1]["feats"].shape[0] == 1  # a short video keeps its single padded clip
    # a segment's grid position is the clip whose centre sits at its start time
    tad_a = train[0]
    assert tad_a["segments"][0, 0] == pytest.approx((1.0 * FPS - 8) / 4)
    assert tad_a["labels"] == [1, 2]  # jump, spin: dense ids over the classes present
    assert (root / "features/missing_files.txt").read_text() == "tad_broken\n"
    assert "feat_stride: 4" in (root / "README.md").read_text()


def test_opentad_reads_the_same_export(store, tmp_path):
    export(store, "actionformer", tmp_path / "af")
    train = load_opentad(tmp_path / "af", "training")
    val = load_opentad(tmp_path / "af", "validation")
    assert [n for n, *_ in train] == ["tad_a", "tad_b"]
    assert [n for n, *_ in val] == ["tad_c"]  # tad_short has no segments
    name, segs, labels = train[0]
    np.testing.assert_array_equal(segs, [[16, 40], [48, 80]])  # seconds * fps
    assert labels == [1, 2]


# ---------------------------------------------------------------------------------- RTFM / MGFN


def test_rtfm_layout_lists_abnormal_first_and_aligns_the_gt(store, stored, tmp_path):
    record = export(store, "rtfm", tmp_path / "rtfm")
    s = record["summary"]
    root = tmp_path / "rtfm"
    train = (root / "list/ucf-i3d.list").read_text().splitlines()
    test = (root / "list/ucf-i3d-test.list").read_text().splitlines()

    def vid(line: str) -> str:
        return Path(line).name.removesuffix("_i3d.npy")

    # RTFM cuts the training list at a fixed index: abnormal before it, normal after
    n_abn = s["train_abnormal"]
    assert [vid(x) for x in train[:n_abn]] == ["ad_a1", "ad_Normalish"]
    assert [vid(x) for x in train[n_abn:]] == ["ad_n1", "ad_n2"]
    assert [vid(x) for x in test] == ["ad_t1", "ad_t3", "ad_t2"]
    assert (root / "missing_files.txt").read_text() == "ad_broken\n"

    gt = np.load(root / "list/gt-ucf.npy")
    oracle, offset = [], 0
    for line in test:
        feats = np.load(line.strip("\n"), allow_pickle=True)  # absolute path, as RTFM loads it
        ref = stored[vid(line)]
        assert feats.shape == (len(ref["feats"]), 1, DIM)  # [T, crops, C]
        np.testing.assert_array_equal(feats[:, 0], ref["feats"])
        n = feats.shape[0] * 16
        np.testing.assert_array_equal(gt[offset : offset + n], expected_gt(ref))
        offset += n
        # a clip score that knows its frames: the share of abnormal frames it saw
        oracle.append(expected_gt(ref).reshape(-1, 16).mean(1))
    assert offset == gt.size == s["gt_length"]  # sum(T * 16) over the test list
    # RTFM's test: np.repeat(pred, 16) against the gt; aligned, a perfect clip scorer wins
    pred = np.repeat(np.concatenate(oracle), 16)
    assert roc_auc_score(gt, pred) > 0.95


def test_rtfm_repeats_the_single_view_only_when_asked(store, tmp_path):
    record = export(store, "rtfm", tmp_path / "rtfm", repeat_crops=3)
    assert record["crops"]["repeated"] is True
    line = (tmp_path / "rtfm/list/ucf-i3d-test.list").read_text().splitlines()[0]
    feats = np.load(line)
    assert feats.shape[1] == 3 and np.array_equal(feats[:, 0], feats[:, 2])
    assert "3 copies of one view" in (tmp_path / "rtfm/README.md").read_text()
    with pytest.raises(ConfigError, match="--repeat-crops 10"):
        export(store, "rtfm", tmp_path / "x", crops=10)  # the store holds one crop
    assert not (tmp_path / "x").exists()


def test_rtfm_readme_lists_every_edit_with_this_exports_values(store, tmp_path):
    record = export(store, "rtfm", tmp_path / "rtfm")
    s = record["summary"]
    readme = (tmp_path / "rtfm/README.md").read_text()
    rtfm = {(e["file"], e["old"], e["new"]) for e in s["tools"]["RTFM"]["edits"]}
    n = s["train_abnormal"]
    assert ("dataset.py", "self.list[810:]", f"self.list[{n}:]") in rtfm
    assert ("model.py", "Aggregate(len_feature=2048)", f"Aggregate(len_feature={DIM})") in rtfm
    assert ("model.py", "nn.BatchNorm1d(2048)", f"nn.BatchNorm1d({DIM})") in rtfm
    assert len(rtfm) == 6
    mgfn = {(e["file"], e["old"], e["new"]) for e in s["tools"]["MGFN"]["edits"]}
    assert ("models/mgfn.py", "channels = 2048", f"channels = {DIM}") in mgfn and len(mgfn) == 5
    for e in s["tools"]["RTFM"]["edits"] + s["tools"]["MGFN"]["edits"]:
        assert f"`{e['old']}` | `{e['new']}`" in readme
    assert "--dataset ucf" in readme and "--batch-size 2" in readme  # 2 abnormal, 2 normal
    assert "will not run" in readme  # one crop: both tools slice batch_size * 10 rows


# --------------------------------------------------------------------------------------- UR-DMU


def test_urdmu_layout_groups_crops_and_labels_by_name(store, stored, tmp_path):
    record = export(store, "urdmu", tmp_path / "urdmu", repeat_crops=10)
    s = record["summary"]
    root = tmp_path / "urdmu"
    crops = s["crops"]
    assert crops == 10 and s["crops_repeated"]
    train = [line.split()[0] for line in open(root / "list/UCF_Train.list")]
    test = [line.split()[0] for line in open(root / "list/UCF_Test.list")]
    assert len(train) == 4 * crops and len(test) == 3 * crops

    def label(path: str) -> int:  # UCF_crime.get_data
        return 0 if "Normal" in path.split("/")[-1] else 1

    def ucf_class(path: str) -> str:  # ucf_infer.py: _name[:-3] of the name before _x264
        name = path.split("/")[-1].split("_x264")[0]
        return "Normal" if "Normal" in name else name[:-3]

    n_abn = s["train_abnormal"] * crops  # UR-DMU's fixed cut (8100 for UCF-Crime)
    assert {label(p) for p in train[:n_abn]} == {1} and {label(p) for p in train[n_abn:]} == {0}
    assert (
        {ucf_class(p) for p in train + test} == {"Anomaly", "Normal"} == {*s["classes"], "Normal"}
    )

    gt = np.load(root / "frame_label/gt-ucf.npy")
    offset = 0
    expected_ids = ["ad_t1", "ad_t3", "ad_t2"]
    for i, ident in enumerate(expected_ids):  # ucf_test groups every 10 consecutive entries
        group = test[i * crops : (i + 1) * crops]
        arrays = [np.load(p).astype(np.float32) for p in group]
        assert all(np.array_equal(a, arrays[0]) for a in arrays)
        assert {label(p) for p in group} == {int(ident != "ad_t2")}
        assert Path(group[0]).name == f"{s['names'][ident]}__0.npy"
        ref = stored[ident]
        np.testing.assert_array_equal(arrays[0], ref["feats"])  # [T, C], T exact
        n = arrays[0].shape[0] * 16
        np.testing.assert_array_equal(gt[offset : offset + n], expected_gt(ref))
        offset += n
    assert offset == gt.size
    # abnormal names are numbered in store order; an abnormal id with "Normal" is not normal
    assert s["names"]["ad_a1"] == "Anomaly001_x264"
    assert s["names"]["ad_Normalish"] == "Anomaly002_x264"
    assert s["names"]["ad_n1"] == "Normal_ad_n1_x264"
    tsv = (root / "names.tsv").read_text().splitlines()
    assert tsv[0] == "video_id\tname\tclass" and "ad_a1\tAnomaly001_x264\tAnomaly" in tsv
    edits = {(e["file"], e["old"], e["new"]) for e in s["tools"]["UR-DMU"]["edits"]}
    assert ("dataset_loader.py", "self.vid_list[8100:]", "self.vid_list[20:]") in edits
    assert ("ucf_main.py", "config.len_feature = 1024", f"config.len_feature = {DIM}") in edits
    assert ("ucf_main.py", "batch_size = 64", "batch_size = 20") in edits
    assert (
        "ucf_test.py",
        "_data, _label = next(load_iter)",
        "_data, _label, _name = next(load_iter)",
    ) in edits
    assert ("ucf_infer.py", '"Normal":{},', '"Normal":{}, "Anomaly":{},') in edits


def test_urdmu_names_keep_ucf_crime_ids():
    from aamflow.stages.export._anomaly import AnomalyLists, AnomalyVideo
    from aamflow.stages.export.urdmu import urdmu_names

    def v(row: int, ident: str, abnormal: bool) -> AnomalyVideo:
        return AnomalyVideo(row=row, id=ident, abnormal=abnormal, clip_start=0, clip_count=1)

    lists = AnomalyLists(
        train=[v(0, "Abuse028_x264", True), v(1, "Normal_Videos_003_x264", False)],
        test=[v(2, "x/fall_7", True), v(3, "Shooting01_x264", True)],
        missing=[],
    )
    names = urdmu_names(lists)
    assert (
        names["Abuse028_x264"].stem == "Abuse028_x264" and names["Abuse028_x264"].folder == "Abuse"
    )
    assert names["Normal_Videos_003_x264"].stem == "Normal_Videos_003_x264"
    assert names["x/fall_7"].stem == "Anomaly001_x264"  # not UCF-named: numbered
    assert names["Shooting01_x264"].stem == "Anomaly002_x264"  # 2 digits: not UCF's form


def test_urdmu_default_follows_the_stores_crops(store, tmp_path):
    record = export(store, "urdmu", tmp_path / "u")
    s = record["summary"]
    assert s["crops"] == 1 and not s["crops_repeated"]
    assert len((tmp_path / "u/list/UCF_Test.list").read_text().splitlines()) == 3
    edits = {(e["file"], e["old"], e["new"]) for e in s["tools"]["UR-DMU"]["edits"]}
    assert ("ucf_test.py", "if (i + 1) % 10 == 0 :", "if (i + 1) % 1 == 0 :") in edits


# ---------------------------------------------------------------- raw stores and provenance


def test_exporting_a_raw_store_warns_and_the_readme_says_so(store, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="aamflow.export"):
        export(store, "rtfm", tmp_path / "a")
    warnings = [r for r in caplog.records if r.name == "aamflow.export"]
    assert len(warnings) == 1 and "not anonymized" in warnings[0].getMessage()
    assert "--allow-raw" in warnings[0].getMessage()
    assert "**no: raw encoder features.**" in (tmp_path / "a/README.md").read_text()
    caplog.clear()
    with caplog.at_level("WARNING", logger="aamflow.export"):
        export(store, "rtfm", tmp_path / "b", allow_raw=True)
    assert not [r for r in caplog.records if r.name == "aamflow.export"]
    caplog.clear()
    args = ["export", "--store", str(store), "--format", "actionformer"]
    with caplog.at_level("WARNING", logger="aamflow.export"):
        assert CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "c")], obj={}).exit_code == 0
        assert len([r for r in caplog.records if r.name == "aamflow.export"]) == 1
        caplog.clear()
        res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "d"), "--allow-raw"], obj={})
        assert res.exit_code == 0
        assert not [r for r in caplog.records if r.name == "aamflow.export"]


def test_an_anonymized_stores_readme_records_its_adapter(tmp_path, caplog):
    from aamflow.schemas.fake import fake_store
    from aamflow.stages.anonymize.config import AnonymizeConfig
    from aamflow.stages.anonymize.stage import run_anonymize
    from tests.stages.anonymize.test_anonymize import make_adapter

    raw = fake_store(tmp_path / "f.zarr", n_videos=12, part_size=6)
    make_adapter(raw)
    anon = Path(run_anonymize(AnonymizeConfig(store=raw, quiet=True))["out"])
    digest = open_store(anon).provenance["adapter_digest"]
    with caplog.at_level("WARNING", logger="aamflow.export"):
        record = export(anon, "actionformer", tmp_path / "af")
    assert not [r for r in caplog.records if r.name == "aamflow.export"]
    assert record["store"]["anonymized"] is True and record["store"]["adapter_digest"] == digest
    readme = (tmp_path / "af/README.md").read_text()
    assert f"| adapter digest | `{digest}` |" in readme and "| anonymized | **yes**" in readme
    assert "read this export unmodified" in readme
    assert "empty_label_ids: [4]" not in readme and "'empty_label_ids': []" in readme


# ---------------------------------------------------------------------------- the out folder


def test_out_folder_rules(store, tmp_path):
    out = tmp_path / "out"
    export(store, "rtfm", out)
    stale = out / "features/stale_i3d.npy"
    stale.write_bytes(b"old")
    marker = json.loads((out / MARKER).read_text())
    assert marker["store"]["uuid"] and marker["format"] == "rtfm"
    export(store, "rtfm", out)  # a previous export of the same store is replaced whole
    assert not stale.exists() and (out / "list/gt-ucf.npy").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folders left

    runner = CliRunner()
    for target, fmt in ((out, "actionformer"), (tmp_path / "foreign", "rtfm")):
        target.mkdir(exist_ok=True)
        if fmt == "rtfm":
            (target / "notes.txt").write_text("mine")
        args = ["export", "--store", str(store), "--format", fmt, "--out", str(target)]
        result = runner.invoke(cli, args, obj={})
        assert result.exit_code == 2, result.output
        assert "--out" in result.output
    assert (tmp_path / "foreign/notes.txt").read_text() == "mine"

    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(
        cli,
        ["-q", "export", "--store", str(store), "--format", "urdmu", "--out", str(empty)],
        obj={},
    )
    assert result.exit_code == 0, result.output
    assert (empty / MARKER).exists()
    with pytest.raises(UnknownNameError, match="actionformer"):
        ExportConfig(store=store, fmt="tsn", out=tmp_path / "x")


def test_a_failed_export_leaves_nothing_behind(store, tmp_path, monkeypatch):
    def broken(*_args, **_kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr("aamflow.stages.export.rtfm.features", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export(store, "rtfm", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the out folder nor a staging folder
