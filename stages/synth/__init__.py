"""aamflow stage: synth — a synthetic privacy benchmark with ground truth.

``run_synth(SynthConfig(out=..., preset="demo", seed=0))`` writes H.264 mp4 videos of
rendered actors and a ``data_manifest.yaml`` describing them. Videos are 112x112 pixels at
16 fps. Private attributes are static appearance (``skin_tone``, ``gender`` as body shape
and hair length, ``clothing``); actions are motion (``walk_left``, ``walk_right``, ``jump``,
``wave``, ``spin``, ``crouch``); ``gait`` (normal/limp) is a private attribute carried by
motion. The corpus holds trimmed action clips (``task: ar``, train/val/test), untrimmed
videos with action segments (``task: tad``), normal and abnormal videos with anomaly
intervals (``task: ad``: fall, shake, collision) and a gender-bias split (``subset: bias``).
Presets ``tiny``, ``demo`` and ``bench`` set the sizes; see ``CORPUS.md`` beside this file.
Everything is a pure function of (preset, seed): same seed, same manifest, same frames.
"""

from __future__ import annotations

from .run import SynthConfig, run_synth

__all__ = ["SynthConfig", "run_synth"]
