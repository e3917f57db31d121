"""aamflow stage: anonymize."""
