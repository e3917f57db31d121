"""Feature store backends: one module per engine."""
