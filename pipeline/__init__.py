"""aamflow pipeline: CLI, configuration, orchestration, cluster and progress."""
