"""From a cohort's TSR to a study: agreement with pathologists' scores, and survival by TSR.

Reads the cohort.csv of `ldcsf slide` (one or several) and writes the tables, figures, JSON and
an HTML page (study.html) that a TSR paper reports. The statistics come from the field's kept
libraries (pingouin, scikit-learn, scipy, lifelines: the `study` extra), never hand-written.
"""

from .files import STUDY_FILES

__all__ = ["STUDY_FILES"]
