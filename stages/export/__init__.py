"""aamflow stage: export."""
