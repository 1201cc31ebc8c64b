"""Data loaders and windowing."""
