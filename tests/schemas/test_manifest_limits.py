"""Hostile manifests: alias bombs, huge or control-character strings, invalid text, huge
numbers, deep nesting, duplicate videos. Each is one bounded ManifestError, quickly."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from aamflow.schemas.errors import ManifestError
from aamflow.schemas.manifest import duplicate_videos, load_manifest

HEAD = """schema: aamflow.manifest/1
label_spaces:
  actions: [walk]
"""


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def refused(path: Path, fragment: str) -> str:
    t0 = time.perf_counter()
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    msg = str(err.value)
    assert time.perf_counter() - t0 < 5, "refusing took too long"
    assert fragment in msg, msg
    assert "\n" not in msg and len(msg) < 1000, msg
    return msg


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        levels.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    text = HEAD + "x:\n" + "\n".join("  " + line for line in levels)
    text += "\nvideos:\n  - {id: v, path: v.mp4, split: *a9}\n"
    assert len(text) < 1000
    refused(write(tmp_path, text), "expand to more than 100,000 nodes")


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    text = HEAD + "videos:\n  - &v {id: a, path: a.mp4, split: train, segments: [*v]}\n"
    refused(write(tmp_path, text), "an alias refers to itself")


def test_the_aliases_pyyaml_writes_for_a_shared_object_are_accepted(tmp_path: Path) -> None:
    import yaml

    attrs = {"skin_tone": "dark"}  # one dict reused by two videos: safe_dump writes &id001
    doc = {
        "schema": "aamflow.manifest/1",
        "label_spaces": {"attributes": {"skin_tone": ["light", "dark"]}},
        "videos": [
            {"id": f"v{i}", "path": f"v{i}.mp4", "split": "train", "attributes": attrs}
            for i in range(2)
        ],
    }
    text = yaml.safe_dump(doc)
    assert "*id001" in text
    m = load_manifest(write(tmp_path, text))
    assert [v.attributes for v in m.videos] == [attrs, attrs]


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"id": "ad_x\n/etc/passwd"}, "control character U+000A"),
        ({"id": "a\u2028b"}, "control character U+2028"),
        ({"id": "x" * 201}, "longer than 200 bytes"),
        ({"id": "é" * 101}, "longer than 200 bytes"),
        ({"subset": "main\r"}, "field 'subset'"),
        ({"subset": "s" * 10_000}, "longer than 200 bytes"),
        ({"path": "a\tb.mp4"}, "control character"),
        ({"split": "x" * 1_000_000}, "is not one of train"),
    ],
)
def test_string_fields_are_bounded_and_printable(tmp_path: Path, entry, fragment) -> None:
    video = {"id": "v", "path": "v.mp4", "split": "train", **entry}
    text = HEAD + "videos:\n  - " + json.dumps(video) + "\n"
    msg = refused(write(tmp_path, text), fragment)
    assert "/etc/passwd" not in msg or "\\n" in msg  # shown escaped, never as a new line


def test_the_name_and_label_names_are_bounded_too(tmp_path: Path) -> None:
    video = "  - {id: v, path: v.mp4, split: train}\n"
    refused(write(tmp_path, HEAD + f"name: {'n' * 300}\nvideos:\n" + video), "field 'name'")
    text = 'schema: aamflow.manifest/1\nlabel_spaces:\n  actions: ["a\\nb"]\nvideos:\n' + video
    refused(write(tmp_path, text), "control character")


def test_huge_sampling_values_are_refused(tmp_path: Path) -> None:
    text = HEAD + "sampling: {static_per_video: 100000000}\nvideos:\n"
    text += "  - {id: v, path: v.mp4, split: train}\n"
    refused(write(tmp_path, text), "must be in [1, 1000]")


def jsonl(tmp_path: Path, body: bytes, suffix: str = ".jsonl") -> Path:
    (tmp_path / f"list{suffix}").write_bytes(body)
    return write(tmp_path, HEAD + f"video_lists: [list{suffix}]\n")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            b'{"id": "v", "path": "v.mp4", "split": "train"}\n{"id": "\xff\xfe"}\n',
            "line 2: not valid UTF-8",
        ),
        (
            b'{"id": "v", "path": "v.mp4", "split": "train", "num_frames": ' + b"9" * 5000 + b"}\n",
            "line 1: invalid JSON",
        ),
        (b"[" * 100_000 + b"]" * 100_000 + b"\n", "line 1: invalid JSON: nested too deeply"),
        (b'{"id": "v", "path": "v.mp4", "split": "train", "fps": 1e999}\n', "field 'fps'"),
        (
            b'{"id": "v", "path": "v.mp4", "split": "train", "duration": ' + b"9" * 400 + b"}\n",
            "out of range",
        ),
    ],
)
def test_hostile_jsonl_is_one_error(tmp_path: Path, body: bytes, fragment: str) -> None:
    refused(jsonl(tmp_path, body), fragment)


def test_hostile_csv_is_one_error(tmp_path: Path) -> None:
    good = b"id,path,split,attributes\n"
    refused(jsonl(tmp_path, good + b"v,v.mp4,train,\xff\n", ".csv"), "line 2: not valid UTF-8")
    deep = b'"' + b"[" * 100_000 + b'"'
    refused(jsonl(tmp_path, good + b"v,v.mp4,train," + deep + b"\n", ".csv"), "expected JSON text")
    refused(jsonl(tmp_path, good + b"v,v.mp4,train,{},extra\n", ".csv"), "more cells than")


def test_hostile_yaml_numbers_and_nesting_are_one_error(tmp_path: Path) -> None:
    text = HEAD + "sampling: {clip_len: " + "9" * 5000 + "}\n"
    refused(write(tmp_path, text), "invalid YAML")
    refused(write(tmp_path, HEAD + "x: " + "[" * 20_000 + "]" * 20_000 + "\n"), "invalid YAML")


def test_duplicate_videos_are_found_by_path_and_by_content(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"same bytes")
    (tmp_path / "b.mp4").write_bytes(b"other")
    shutil.copy(tmp_path / "a.mp4", tmp_path / "copy.mp4")
    videos = [
        {"id": "one", "path": "a.mp4", "split": "train"},
        {"id": "two", "path": "./a.mp4", "split": "test"},
        {"id": "three", "path": "copy.mp4", "split": "train"},
        {"id": "four", "path": "b.mp4", "split": "train"},
    ]
    m = load_manifest(
        write(tmp_path, HEAD + "videos:\n" + "".join(f"  - {json.dumps(v)}\n" for v in videos))
    )
    groups = {g.how: g for g in duplicate_videos(m)}
    assert [v.id for v in groups["path"].videos] == ["one", "two"]
    assert groups["path"].splits == ["test", "train"]
    assert {v.id for v in groups["content"].videos} == {"one", "two", "three"}
    assert "four" not in groups["content"].describe()
