"""Slide outputs: tile tables, QuPath GeoJSON, pictures and the one-page HTML report.

`ldcsf.export.slide_outputs.write_slide_outputs` writes them for one slide, walking the list of
named writers in `slide_writers.py`.
"""
