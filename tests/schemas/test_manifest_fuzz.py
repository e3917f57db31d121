"""Fuzzing the manifest loader: any input is either a valid manifest or one ManifestError,
and no accepted path ever leaves the root."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aamflow.schemas.errors import ManifestError
from aamflow.schemas.manifest import load_manifest

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=True), st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
paths = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "a.mp4",
            "../a.mp4",
            "/etc/passwd",
            "x/../../a.mp4",
            "./a.mp4",
            "a/./b.mp4",
            "..",
            "~/a.mp4",
            "a\\..\\..\\b",
            "a\x00.mp4",
        ]
    ),
)
video = st.fixed_dictionaries(
    {
        "id": st.one_of(st.text(min_size=1, max_size=6), st.integers()),
        "path": paths,
        "split": st.sampled_from(["train", "val", "test", "x"]),
    },
    optional={
        "task": st.sampled_from(["ar", "tad", "ad", "?"]),
        "fps": values,
        "num_frames": values,
        "duration": values,
        "action": st.sampled_from(["jump", "wave", "fly"]),
        "segments": values,
        "anomaly": values,
        "attributes": values,
        "group": values,
    },
)
docs = st.fixed_dictionaries(
    {"videos": st.lists(video, max_size=4)},
    optional={
        "schema": st.sampled_from(["aamflow.manifest/1", "other"]),
        "sampling": values,
        "label_spaces": st.one_of(
            values, st.just({"actions": ["jump", "wave"], "attributes": {"skin": ["a", "b"]}})
        ),
        "root": st.one_of(st.just("."), st.just("a\x00b"), st.text(max_size=6)),
        "video_lists": st.one_of(
            st.lists(st.sampled_from(["a.jsonl", "b\x00.csv", "c.txt"]), max_size=2), values
        ),
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=docs)
def test_any_document_loads_or_fails_with_one_manifest_error(tmp_path: Path, doc: dict) -> None:
    file = tmp_path / "m.yaml"
    file.write_text(yaml.safe_dump(doc))
    try:
        m = load_manifest(file)
    except ManifestError as e:
        assert "\n" not in str(e)
        return
    root = m.root.resolve()
    for v in m.videos:
        assert (root / v.path).resolve().is_relative_to(root)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_arbitrary_text_and_jsonl_never_crash(tmp_path: Path, text: str) -> None:
    (tmp_path / "m.yaml").write_text(text)
    try:
        load_manifest(tmp_path / "m.yaml")
    except ManifestError:
        pass
    (tmp_path / "l.jsonl").write_text(
        text + "\n" + json.dumps({"id": "a", "path": "a.mp4", "split": "train"})
    )
    (tmp_path / "n.yaml").write_text("video_lists: [l.jsonl]\n")
    try:
        load_manifest(tmp_path / "n.yaml")
    except ManifestError:
        pass
