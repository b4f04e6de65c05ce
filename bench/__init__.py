"""`make bench`: wxcube's SPEC §8 figures, measured side by side in one run."""
