"""The runtimes are one table: `--runtime`'s choices and the docs are read from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ldcsf.cli.main import build_parser, main
from ldcsf.inference.runtimes import (AUTO, REGISTRY, RUNTIME_CHOICES, RUNTIMES, check_runtime_device, get_runtime,
                                     runtimes_markdown)
from ldcsf.options import PredictOptions

ROOT = Path(__file__).resolve().parents[1]


def runtime_action(command: str):
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return next(a for a in subparsers.choices[command]._actions if a.dest == "runtime")


@pytest.mark.parametrize("command", ["slide", "predict"])
def test_the_cli_choices_are_the_registry(command):
    action = runtime_action(command)
    assert tuple(action.choices) == RUNTIME_CHOICES == (AUTO, *REGISTRY)
    assert action.default == PredictOptions.runtime == AUTO  # the fastest exact runtime installed
    for name in RUNTIMES:
        assert name in action.choices
    assert "tensorrt" not in action.choices


def test_an_unknown_runtime_is_refused_naming_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "x.png", "--out", "p.csv", "--runtime", "tensorrt"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "invalid choice: 'tensorrt'" in err and all(repr(name) in err for name in RUNTIME_CHOICES)
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'; choose from torch, onnx, openvino"):
        get_runtime("tensorrt")


def test_the_registry_says_where_each_runtime_runs():
    for runtime in REGISTRY.values():
        if runtime.cpu_only:
            with pytest.raises(ValueError, match=f"--runtime {runtime.name} runs on the CPU"):
                check_runtime_device(runtime.name, "gpu")
        else:
            check_runtime_device(runtime.name, "gpu")
        assert (runtime.engine is None) == (runtime.needs == ())  # only exported engines need extra packages


def test_the_docs_show_the_registry():
    assert runtimes_markdown() in (ROOT / "docs" / "slides.md").read_text(encoding="utf-8")


def test_the_parser_reads_the_registry_without_loading_torch():
    # The parser is built for every command, `ldcsf slide --help` included: reading the table must stay light.
    code = ("import sys\nfrom ldcsf.cli.main import build_parser\nparser = build_parser()\n"
            "sub = next(a for a in parser._actions if a.dest == 'command').choices['slide']\n"
            "from ldcsf.inference.runtimes import RUNTIME_CHOICES\n"
            "assert '--runtime {' + ','.join(RUNTIME_CHOICES) + '}' in sub.format_help()\n"
            "assert parser.parse_args(['slide', 's.svs', '--out', 'o', '--runtime', 'openvino']).runtime == 'openvino'\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
