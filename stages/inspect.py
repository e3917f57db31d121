"""``aamflow inspect``: summarise and validate a feature store (or a manifest)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aamflow.schemas.errors import StoreError


@dataclass(frozen=True, kw_only=True)
class InspectConfig:
    path: Path
    deep: bool = False
    as_json: bool = False


def inspect_manifest(path: Path) -> dict[str, Any]:
    from aamflow.schemas.manifest import load_manifest

    m = load_manifest(path)
    by_task: dict[str, int] = {}
    by_split: dict[str, int] = {}
    for v in m.videos:
        by_task[v.task] = by_task.get(v.task, 0) + 1
        by_split[v.split] = by_split.get(v.split, 0) + 1
    return {
        "kind": "manifest",
        "path": str(path),
        "name": m.name,
        "videos": len(m.videos),
        "by_task": by_task,
        "by_split": by_split,
        "sampling": m.sampling.to_dict(),
        "label_spaces": m.label_spaces.to_dict(),
        "digest": m.digest,
        "valid": True,
    }


def inspect_store(path: Path, deep: bool = False) -> dict[str, Any]:
    """Counts, dtypes, encoder, sampling, provenance, stripped columns, failed videos and a
    verdict. An unfinished (unindexed) store is summarised from its committed parts."""
    from aamflow.schemas.store import open_store

    with open_store(path, allow_incomplete=True) as store:
        meta = store.meta
        indexed = store.complete
        problems = [] if not store.part_names else store.validate(deep=deep)
        if not indexed:
            problems.insert(
                0,
                f"incomplete: not indexed, {len(store.part_names)}/{len(meta['plan'])} parts "
                "committed (resume the run that writes it, or index --part slices with "
                "extract --commit-only)",
            )
        arrays: dict[str, Any] = {}
        failed: list[dict[str, Any]] = []
        n_videos = sum(c["videos"] for c in store.part_counts)
        sound = not any(p.startswith("part ") for p in problems)
        if store.part_names and sound:
            first = store._part(store.part_names[0])
            for name, table in (("clip_features", "clips"), ("static_features", "static")):
                arr = first[name]
                total = sum(c[table] for c in store.part_counts)
                arrays[name] = {"shape": [total, *arr.shape[1:]], "dtype": str(arr.dtype)}
            videos = store.videos
            n_videos = len(videos)
            bad = videos[videos["status"] != "ok"]
            failed = [
                {"id": r["id"], "path": r.get("path"), "error": r.get("error")}
                for _, r in bad.iterrows()
            ]
        return {
            "kind": "store",
            "path": str(path),
            "format": store.format,
            "schema": f"{meta['schema']}/{meta['version']}",
            "complete": indexed,
            "videos": n_videos,
            "clips": arrays.get("clip_features", {}).get("shape", [0])[0],
            "static_clips": arrays.get("static_features", {}).get("shape", [0])[0],
            "arrays": arrays,
            "parts": {"planned": len(meta["plan"]), "committed": len(store.part_names)},
            "encoder": meta["encoder"],
            "sampling": meta["sampling"],
            "label_spaces": meta["label_spaces"],
            "provenance": meta["provenance"],
            "stripped": store.stripped,
            "failed_videos": failed,
            "problems": problems,
            "valid": not problems,
        }


def run_inspect(config: InspectConfig) -> dict[str, Any]:
    """Inspect a store directory/file, or a manifest YAML."""
    p = config.path
    if p.suffix.lower() in (".yaml", ".yml"):
        return inspect_manifest(p)
    if not p.exists():
        raise StoreError(f"{p}: no such store")
    return inspect_store(p, deep=config.deep)


def format_inspect(info: dict[str, Any]) -> str:
    """Human-readable report for the terminal."""
    if info["kind"] == "manifest":
        lines = [
            f"manifest  {info['path']}  ({info['name']})",
            f"videos    {info['videos']}  by task {info['by_task']}  by split {info['by_split']}",
            f"sampling  {_kv(info['sampling'])}",
            f"actions   {', '.join(info['label_spaces']['actions'])}",
            f"private   {_kv({k: '/'.join(v) for k, v in {**info['label_spaces']['attributes'], **info['label_spaces']['temporal_attributes']}.items()})}",
            f"digest    {info['digest']}",
            "verdict   valid",
        ]
        return "\n".join(lines)
    enc = info["encoder"]
    prov = info["provenance"]
    lines = [
        f"store     {info['path']}  [{info['format']}, {info['schema']}]",
        f"videos    {info['videos']}  (parts {info['parts']['committed']}/{info['parts']['planned']} committed)",
    ]
    for name, a in info["arrays"].items():
        lines.append(
            f"{name:<9} {a['shape']} {a['dtype']}".replace("clip_features", "clips    ").replace(
                "static_features", "static   "
            )
        )
    lines += [
        f"encoder   {enc.get('name')}  dim={enc.get('dim')}  weights={str(enc.get('weights_digest'))[:23]}",
        f"sampling  {_kv(info['sampling'])}",
        f"store id  {prov.get('store_uuid')}  created {prov.get('created_utc')}  by aamflow {prov.get('tool_version')}",
        f"manifest  {prov.get('manifest_digest')}",
    ]
    if prov.get("anonymized"):
        lines.append(
            f"anonymized  yes: adapter {prov.get('adapter_digest')}  source store {prov.get('source_store_uuid')}"
        )
    else:
        lines.append("anonymized  no (raw encoder features)")
    stripped = info.get("stripped") or []
    if stripped:
        lines.append(
            f"stripped  {', '.join(stripped)} (private labels and source paths are not in "
            "this store; eval reads private labels from --reference or --manifest)"
        )
    elif prov.get("anonymized"):
        lines.append("stripped  none: this anonymized store carries the private labels")
    if info["failed_videos"]:
        lines.append(f"failed    {len(info['failed_videos'])} video(s):")
        for f in info["failed_videos"][:20]:
            where = f" ({f['path']})" if f.get("path") else ""
            why = f": {f['error']}" if f.get("error") else ""
            lines.append(f"  {f['id']}{where}{why}")
    else:
        lines.append("failed    none")
    if not info.get("complete", True):
        lines.append(f"verdict   INCOMPLETE ({len(info['problems'])} problem(s))")
        lines += [f"  {p}" for p in info["problems"][:20]]
    elif info["problems"]:
        lines.append(f"verdict   INVALID ({len(info['problems'])} problem(s))")
        lines += [f"  {p}" for p in info["problems"][:20]]
    else:
        lines.append("verdict   valid")
    return "\n".join(lines)


def _kv(d: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items())


def to_json(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=2, default=str)
