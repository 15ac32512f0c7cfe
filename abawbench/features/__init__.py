"""Features: preprocessing, extraction, and the HDF5 feature cache (key, entry, store)."""
