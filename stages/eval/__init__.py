"""aamflow stage: eval."""
