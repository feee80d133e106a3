"""Shared pieces of the studio: settings, auth, workspace layout, model registry, demo models."""
