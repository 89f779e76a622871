"""stain_rule.py: haematoxylin density alone, ranked against the masked sources' stroma fractions."""

from __future__ import annotations

import json

from test_benchmarks import run_script


def test_haematoxylin_density_ranks_both_masked_sources(shared_data, tmp_path):
    """Real images: on both masked sources the share of tissue with little haematoxylin rises with the
    mask's stroma fraction (measured: Spearman 0.44-0.50 on GlaS, 0.63-0.66 on WSSS4LUAD at 0.15-0.3)."""
    out = tmp_path / "stain_rule"
    run_script("stain_rule.py", "--data", str(shared_data), "--out", str(out))
    results = json.loads(out.with_suffix(".json").read_text())["results"]
    assert results["glas"]["images"] == 91 and results["wsss4luad_masks"]["images"] > 20
    for source in ("glas", "wsss4luad_masks"):
        scores = results[source]["by_threshold"]
        assert set(scores) == {"0.15", "0.3", "0.5"}
        assert max(s["spearman"] for s in scores.values()) > 0.35, (source, scores)
        assert all(0 <= s["mae"] <= 1 for s in scores.values())
    assert "| glas | 91 |" in out.with_suffix(".md").read_text()
