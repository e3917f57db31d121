"""The manifest contract: the example loads; each bad case fails with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aamflow.schemas.errors import ManifestError
from aamflow.schemas.manifest import load_manifest

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, doc: dict, name: str = "data_manifest.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


def base_doc() -> dict:
    return {
        "schema": "aamflow.manifest/1",
        "root": ".",
        "label_spaces": {
            "actions": ["jump", "wave"],
            "attributes": {"skin_tone": ["light", "dark"]},
            "groups": ["f", "m"],
        },
        "videos": [
            {
                "id": "a",
                "path": "a.mp4",
                "split": "train",
                "action": "jump",
                "attributes": {"skin_tone": "dark"},
            },
            {
                "id": "b",
                "path": "sub/b.mp4",
                "split": "test",
                "task": "tad",
                "fps": 10,
                "num_frames": 100,
                "segments": [{"label": "wave", "start": 1.0, "end": 3.0}],
            },
        ],
    }


def test_example_manifest_loads() -> None:
    m = load_manifest(REPO / "data_manifest.yaml")
    assert len(m.videos) == 3
    assert m.sampling.clip_len == 16
    assert m.videos[1].segments[0].label == "jump"
    assert m.videos[2].anomaly == 1
    assert m.digest.startswith("sha256:")


def test_example_matches_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "schemas" / "manifest.schema.json").read_text())
    jsonschema.validate(yaml.safe_load((REPO / "data_manifest.yaml").read_text()), schema)


def test_video_lists_jsonl_and_csv(tmp_path: Path) -> None:
    doc = base_doc()
    extra = doc["videos"].pop()
    (tmp_path / "more.jsonl").write_text(json.dumps(extra) + "\n")
    (tmp_path / "more.csv").write_text(
        'id,path,split,action,attributes\nc,c.mp4,val,wave,"{""skin_tone"": ""light""}"\n'
    )
    doc["video_lists"] = ["more.jsonl", "more.csv"]
    m = load_manifest(write(tmp_path, doc))
    assert [v.id for v in m.videos] == ["a", "b", "c"]
    assert m.videos[2].attributes == {"skin_tone": "light"}
    assert m.videos[1].duration == 10.0


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d["videos"].append(dict(d["videos"][0])), "duplicate id 'a'"),
        (lambda d: d["videos"][0].update(path="../escape.mp4"), "escapes the root"),
        (lambda d: d["videos"][0].update(path="/etc/passwd"), "is absolute"),
        (lambda d: d["videos"][0].update(action="fly"), "unknown action 'fly'"),
        (lambda d: d["videos"][0].update(attributes={"skin_tone": "blue"}), "unknown value 'blue'"),
        (lambda d: d["videos"][0].update(attributes={"age": "old"}), "unknown attribute"),
        (
            lambda d: d["videos"][1]["segments"].append({"label": "wave", "start": 5, "end": 12}),
            "outside [0, 10.0]",
        ),
        (
            lambda d: d["videos"][1]["segments"].append({"label": "cry", "start": 1, "end": 2}),
            "unknown action 'cry'",
        ),
        (
            lambda d: d["videos"][0].update(split="holdout"),
            "'holdout' is not one of train, val, test",
        ),
        (lambda d: d["videos"][0].update(fps="fast"), "field 'fps': expected a number"),
        (
            lambda d: d["videos"][1].update(num_frames=2.5),
            "field 'num_frames': expected an integer",
        ),
        (lambda d: d.update(sampling={"clip_len": 0}), "sampling.clip_len"),
        (lambda d: d.update(sampling={"clip_len": "16"}), "sampling.clip_len"),
        (lambda d: d["videos"][0].pop("split"), "field 'split': is required"),
        (lambda d: d["videos"][0].update(colour="red"), "field 'colour': unknown field"),
        (lambda d: d["videos"][0].update(anomaly=2), "must be 0 or 1"),
    ],
)
def test_bad_manifests_fail_with_one_clear_line(tmp_path: Path, mutate, fragment: str) -> None:
    doc = base_doc()
    mutate(doc)
    path = write(tmp_path, doc)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    msg = str(err.value)
    assert fragment in msg
    assert "\n" not in msg
    assert str(path) in msg  # names the file


def test_error_names_the_entry_in_a_video_list(tmp_path: Path) -> None:
    doc = base_doc()
    (tmp_path / "list.jsonl").write_text(
        json.dumps({"id": "z", "path": "z.mp4", "split": "train"})
        + "\n"
        + json.dumps({"id": "y", "path": "y.mp4", "split": "train", "action": "fly"})
        + "\n"
    )
    doc["video_lists"] = ["list.jsonl"]
    with pytest.raises(ManifestError, match=r"list.jsonl: line 2 \(id 'y'\): field 'action'"):
        load_manifest(write(tmp_path, doc))


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.mp4").write_bytes(b"x")
    (root / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    doc = base_doc()
    doc["root"] = "root"
    doc["videos"][0]["path"] = "link.mp4"
    with pytest.raises(ManifestError, match="resolves outside the root"):
        load_manifest(write(tmp_path, doc))


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("videos: [\n")
    with pytest.raises(ManifestError, match="invalid YAML"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "nope.yaml")
