"""Datasets, image loading, face chips and the degradations that make faces low-resolution."""
