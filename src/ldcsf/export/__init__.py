"""Slide outputs: tile tables, QuPath GeoJSON, pictures and the one-page HTML report.

`ldcsf.export.slide_outputs.write_slide_outputs` writes all of them for one slide.
"""
