"""eval of an anonymized store that holds no private labels: they come from --reference or
--manifest, matched by video id, and a source that describes other videos is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aamflow.schemas.errors import ConfigError
from aamflow.schemas.fake import FAKE_SPACES, fake_store
from aamflow.schemas.store import open_store
from aamflow.stages.anonymize.config import AnonymizeConfig
from aamflow.stages.anonymize.stage import run_anonymize
from aamflow.stages.eval.config import EvalConfig
from aamflow.stages.eval.stage import run_eval
from tests.stages.anonymize.test_anonymize import make_adapter

FAST = {"attackers": ("linear", "knn"), "epochs": 2, "quiet": True, "tasks": ("privacy", "bias")}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("private")
    raw = fake_store(root / "raw.zarr", n_videos=30, part_size=30, seed=2)
    adapter = make_adapter(raw, out=root / "adapter")
    run = {"store": raw, "adapter": adapter, "quiet": True}
    stripped = run_anonymize(AnonymizeConfig(out=root / "anon.zarr", **run))["out"]
    kept = run_anonymize(AnonymizeConfig(out=root / "kept.zarr", keep_private_labels=True, **run))
    return {"raw": raw, "anon": Path(stripped), "kept": Path(kept["out"]), "root": root}


def manifest_for(store: Path, out: Path, edit=None) -> Path:
    """The manifest a fake store could have come from: its ids, splits, tasks and labels."""
    s = open_store(store)
    spaces = s.label_spaces
    videos = []
    for _, v in s.videos.iterrows():
        entry = {"id": v["id"], "path": v["path"], "split": v["split"], "task": v["task"]}
        attrs = {
            n: spaces.attributes[n][int(v[f"label_attr_{n}"])]
            for n in spaces.attributes
            if v[f"label_attr_{n}"] >= 0
        }
        if attrs:
            entry["attributes"] = attrs
        if v["label_group"] >= 0:
            entry["group"] = spaces.groups[int(v["label_group"])]
        videos.append(entry)
    doc = {"schema": "aamflow.manifest/1", "label_spaces": FAKE_SPACES.to_dict(), "videos": videos}
    if edit:
        edit(doc)
    out.write_text(yaml.safe_dump(doc))
    return out


def privacy(report: dict) -> dict:
    return {k: v["attackers"] for k, v in report.get("privacy", {}).items()}


def test_privacy_figures_need_labels_and_match_from_either_source(stores, tmp_path) -> None:
    alone = run_eval(EvalConfig(store=stores["anon"], out=tmp_path / "a", **FAST))
    assert "privacy" not in alone
    assert any("holds no private labels" in n for n in alone["notes"])

    kept = run_eval(EvalConfig(store=stores["kept"], out=tmp_path / "k", **FAST))
    with_ref = run_eval(
        EvalConfig(store=stores["anon"], reference=stores["raw"], out=tmp_path / "r", **FAST)
    )
    manifest = manifest_for(stores["raw"], tmp_path / "m.yaml")
    with_manifest = run_eval(
        EvalConfig(store=stores["anon"], manifest=manifest, out=tmp_path / "m", **FAST)
    )
    assert set(privacy(kept)) == {"skin_tone", "gender", "skin_tone@clips", "gender@clips"}
    assert privacy(with_manifest) == privacy(kept)
    for key, attackers in privacy(kept).items():  # the reference adds its own figures only
        assert with_ref["privacy"][key]["attackers"] == attackers
    assert any("label_group) read from --manifest" in n for n in with_manifest["notes"])
    # the labels were only read: the store on disk still holds none
    assert "label_attr_gender" not in open_store(stores["anon"]).videos.columns
    assert "label_attr_gender" not in json.dumps(with_ref["stores"])


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d["videos"].pop(3), "lacks 1 of --store's 30 video ids"),
        (lambda d: d["videos"][0].update(split="test"), "is split 'train' in --store but 'test'"),
        (lambda d: d["label_spaces"]["attributes"].update(extra=["a", "b"]), "other label spaces"),
    ],
)
def test_a_manifest_of_other_videos_is_refused(stores, tmp_path, edit, fragment) -> None:
    manifest = manifest_for(stores["raw"], tmp_path / "m.yaml", edit)
    with pytest.raises(ConfigError, match=fragment):
        run_eval(EvalConfig(store=stores["anon"], manifest=manifest, out=tmp_path / "o", **FAST))
    assert not (tmp_path / "o").exists()
