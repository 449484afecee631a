"""Data sources, sampling, augmentation and loading for vidjax (uint8 NTHWC clips)."""
