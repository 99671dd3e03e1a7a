"""Offline lm-eval tasks shipped with ar-eval (YAML + local data); see the package README."""
