"""Documented import paths of moved modules still work, with a DeprecationWarning naming the new home."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MOVED_MODULES = {
    "ldcsf.inference.pipeline": "ldcsf.wholeslide.pipeline",
    "ldcsf.inference.plan": "ldcsf.wholeslide.plan",
    "ldcsf.inference.slide_prediction": "ldcsf.wholeslide.slide_prediction",
    "ldcsf.inference.cohort": "ldcsf.wholeslide.cohort",
    "ldcsf.evaluation.predict": "ldcsf.inference.image_prediction",
}


@pytest.mark.parametrize("old,new", sorted(MOVED_MODULES.items()))
def test_an_old_module_path_warns_and_gives_the_new_module(old, new):
    # A fresh interpreter: an alias warns once, when first imported.
    code = (f"import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            f"try:\n    import {old}\nexcept DeprecationWarning as w:\n    print(w)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f"{old} moved to {new}" in out
    with pytest.warns(DeprecationWarning):
        sys.modules.pop(old, None)
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_old_package_names_warn_and_are_the_same_objects():
    import ldcsf.inference
    import ldcsf.wholeslide

    for name in ("run_slide", "run_cohort", "SlideSettings", "collect_slides", "slide_id_for"):
        with pytest.warns(DeprecationWarning, match=f"ldcsf.wholeslide.{name}"):
            assert getattr(ldcsf.inference, name) is getattr(ldcsf.wholeslide, name)
    with pytest.raises(AttributeError):
        ldcsf.inference.no_such_name  # noqa: B018
