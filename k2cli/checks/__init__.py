"""Validation as code: checklists of steps that measure the pipeline and report pass/fail.

Engine modules here never import typer or rich; the CLI (`k2cli/cli/validate.py`) renders.
"""
