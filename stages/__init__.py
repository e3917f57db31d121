"""aamflow stages: one sub-package per CLI verb, plus the models they share."""
