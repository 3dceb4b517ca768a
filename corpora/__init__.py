"""Corpora that ship with charlm."""
