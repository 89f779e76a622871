"""The `ldcsf` command line surface."""

from __future__ import annotations

import subprocess
import sys

from ldcsf.cli.main import COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    try:
        main(["--help"])
    except SystemExit as stop:
        assert stop.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


def test_models_lists_variants_and_baselines_with_sizes():
    result = subprocess.run([sys.executable, "-m", "ldcsf.cli.main", "models"], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    for name, params in [("ldcsf_swin_tiny", "28.82M"), ("ldcsf_swin_mini", "5.45M"), ("swin_tiny", "27.52M"), ("resnet50", "23.52M")]:
        assert any(line.split()[:2] == [name, params] for line in lines), (name, result.stdout)
