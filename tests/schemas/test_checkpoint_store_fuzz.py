"""Fuzzing adapter.json and part metadata, beside the manifest fuzzer: any edit is either
accepted and consistent, or one user-facing error (CheckpointError, ConfigError, StoreError);
never another exception, never an allocation sized by the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aamflow.schemas.errors import AamflowError, StoreError
from aamflow.schemas.fake import fake_store
from aamflow.schemas.store import open_store

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-3, 64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def adapter_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    from tests.stages.anonymize.test_anonymize import make_adapter

    root = tmp_path_factory.mktemp("fuzz_adapter")
    store = fake_store(root / "features.zarr", n_videos=4, part_size=4, dim=16)
    adapter = make_adapter(store, out=root / "adapter")
    return store, adapter, (adapter / "adapter.json").read_text()


HPARAM_NAMES = ["depth", "hidden", "dropout", "width", "heads", "n_tokens", "layers", "x"]
edits = st.lists(
    st.one_of(
        st.tuples(
            st.just("set"),
            st.sampled_from(
                [
                    "arch",
                    "hparams",
                    "input_dim",
                    "encoder",
                    "train_store_uuid",
                    "loss_weights",
                    "privacy_loss",
                    "tasks",
                    "metrics",
                    "batch_dependent",
                    "epochs",
                    "seed",
                    "weights_digest",
                    "schema",
                    "version",
                    "unknown",
                ]
            ),
            values,
        ),
        st.tuples(st.just("hparam"), st.sampled_from(HPARAM_NAMES), scalars),
        st.tuples(
            st.just("arch"),
            st.sampled_from(["residual_mlp", "token_attention", "paper", "?"]),
            st.none(),
        ),
        st.tuples(
            st.just("drop"),
            st.sampled_from(["arch", "hparams", "input_dim", "weights_digest"]),
            st.none(),
        ),
    ),
    max_size=4,
)


@SETTINGS
@given(edit_list=edits)
def test_any_adapter_json_loads_or_is_refused_in_one_error(adapter_case, edit_list) -> None:
    from aamflow.stages.anonymize import stage
    from aamflow.stages.anonymize.config import AnonymizeConfig

    store, adapter, pristine = adapter_case
    doc = json.loads(pristine)
    for kind, key, value in edit_list:
        if kind == "set":
            doc[key] = value
        elif kind == "hparam" and isinstance(doc.get("hparams"), dict):
            doc["hparams"][key] = value
        elif kind == "arch":
            doc["arch"] = key
        elif kind == "drop":
            doc.pop(key, None)
    (adapter / "adapter.json").write_text(json.dumps(doc))
    stage._checkpoint.cache_clear()
    stage._load_adapter.cache_clear()
    try:
        # everything anonymize does before writing: load, verify, check, build the AAM
        stage._check_inputs(
            AnonymizeConfig(store=store, adapter=adapter, out=store.with_name("o.zarr"))
        )
    except AamflowError as e:
        assert "\n" not in str(e) and len(str(e)) < 2000
    finally:
        (adapter / "adapter.json").write_text(pristine)
        stage._checkpoint.cache_clear()
        stage._load_adapter.cache_clear()


@pytest.fixture(scope="module")
def part_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    store = fake_store(
        tmp_path_factory.mktemp("fuzz_parts") / "f.zarr", n_videos=6, part_size=3, dim=8
    )
    files = [store / "zarr.json", *(store / "parts").glob("part-*/zarr.json")]
    return store, {str(f): f.read_text() for f in files}


part_edits = st.lists(
    st.tuples(
        st.sampled_from(["part-00000", "part-00001", "index"]),
        st.sampled_from(["counts", "rows", "sha256", "name", "start", "stop", "whole"]),
        st.sampled_from(
            ["videos", "clips", "static", "segments", "frames", "clip_features", "video_row"]
        ),
        values,
    ),
    min_size=1,
    max_size=3,
)


@SETTINGS
@given(edit_list=part_edits)
def test_any_part_metadata_reads_consistently_or_is_refused(part_case, edit_list) -> None:
    store, pristine = part_case
    root_file = store / "zarr.json"
    docs = {k: json.loads(v) for k, v in pristine.items()}
    for part, field, key, value in edit_list:
        if part == "index":
            entry = docs[str(root_file)]["attributes"]["aamflow"]["index"]["parts"][0]
            if field == "whole" or not isinstance(entry.get("counts"), dict):
                entry["counts"] = value
            else:
                entry["counts"][key] = value
            continue
        attrs = docs[str(store / "parts" / part / "zarr.json")]["attributes"]
        if field == "whole":
            attrs["aamflow_part"] = value
        elif isinstance(attrs["aamflow_part"], dict):
            block = attrs["aamflow_part"]
            if field in ("counts", "rows", "sha256") and isinstance(block.get(field), dict):
                block[field][key] = value
            else:
                block[field] = value
    for name, doc in docs.items():
        Path(name).write_text(json.dumps(doc))
    try:
        try:
            s = open_store(store)
            n = len(s.videos)
            clips = s.read("clip_features")
            s.validate(deep=True)
        except StoreError as e:
            assert "\n" not in str(e)
            return
        # accepted: what it reads agrees with itself and with the untouched data
        assert n == 6 and clips.shape == (36, 8)
        assert s.clip_features().shape == clips.shape
        np.testing.assert_array_equal(np.asarray(s.clip_features()), clips)
    finally:
        for name, text in pristine.items():
            Path(name).write_text(text)
