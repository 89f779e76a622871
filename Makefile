# Two commands set everything up (see README): `make demo` and `make test`.
# Both create the virtual environment in .venv on first use and reuse it afterwards.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ldcsf-installed
# An empty find-links keeps pip on the registry's regular torch build: some machines offer a
# CPU-only torch wheel locally, and torchvision (imported by timm) cannot load with it.
PIP    := PIP_FIND_LINKS= PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/python -m pip

.PHONY: demo test venv clean model system-packages

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ldcsf demo --out runs/demo

# The system packages some tests need (chromium, chromium-driver, libturbojpeg0): installed when
# this user can (root or password-less sudo); otherwise those tests skip, naming the command.
system-packages:
	-@tools/system_packages.sh

test: $(STAMP) system-packages
	$(BIN)/python -m pytest -n 2 --durations=15 -m "not isolated"
	# Tests that start their own process groups (Lightning DDP) run apart from the xdist workers.
	$(BIN)/python -m pytest -m isolated

# The model that ships inside the package, rebuilt from the shared data (docs/model_card.md).
model: $(STAMP)
	$(BIN)/python tools/build_shipped_model.py --shared ../shared/data --work runs/shipped-build

clean:
	rm -rf $(VENV) runs .pytest_cache
