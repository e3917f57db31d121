"""aamflow data contracts: manifest, feature store, adapter checkpoint."""
