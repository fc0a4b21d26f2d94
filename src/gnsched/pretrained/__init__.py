"""Agents shipped with gnsched; see README.md in this folder for how each was trained."""
