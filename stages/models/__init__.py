"""Models shared by train-adapter, anonymize and eval: AAM architectures, losses, task heads.

- ``aam``: ``AAM_ARCHS``, ``build_aam``, ``is_identity``, ``apply_aam``.
- ``eraser``: the fitted static-appearance eraser composed after an AAM (``erase_rank``).
- ``losses``: ``nt_xent``, ``paired_cross_covariance``, ``latent_consistency``,
  ``total_objective``, ``LossWeights``.
- ``heads`` (+ ``tad_head``, ``ad_head``): ``HEADS`` and each head's build/loss/predict/fit.
"""

from aamflow.stages.models.aam import AAM_ARCHS, MICRO_BATCH, apply_aam, build_aam, is_identity
from aamflow.stages.models.ad_head import (
    build_ad_head,
    fit_ad_head,
    mil_ranking_loss,
    pool_segments,
    score_clips,
    segment_pool_matrix,
)
from aamflow.stages.models.heads import (
    HEADS,
    HeadSpec,
    ar_loss,
    build_ar_linear,
    fit_ar_probe,
    predict_video,
)
from aamflow.stages.models.losses import LossWeights, latent_consistency, nt_xent, total_objective
from aamflow.stages.models.tad_head import (
    TadTargets,
    build_tad_head,
    decode_tad,
    fit_tad_head,
    pack_segments,
    pad_videos,
    seconds_to_timesteps,
    tad_loss,
    tad_targets,
    timesteps_to_seconds,
)

__all__ = [
    "AAM_ARCHS",
    "HEADS",
    "MICRO_BATCH",
    "HeadSpec",
    "LossWeights",
    "TadTargets",
    "apply_aam",
    "ar_loss",
    "build_aam",
    "build_ad_head",
    "build_ar_linear",
    "build_tad_head",
    "decode_tad",
    "fit_ad_head",
    "fit_ar_probe",
    "fit_tad_head",
    "is_identity",
    "latent_consistency",
    "mil_ranking_loss",
    "nt_xent",
    "pack_segments",
    "pad_videos",
    "pool_segments",
    "predict_video",
    "score_clips",
    "seconds_to_timesteps",
    "segment_pool_matrix",
    "tad_loss",
    "tad_targets",
    "timesteps_to_seconds",
    "total_objective",
]
