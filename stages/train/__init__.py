"""aamflow stage: train."""
