"""Thin command modules: parse flags, build engine objects, run them, render the result."""
