"""aamflow stage: extract."""
