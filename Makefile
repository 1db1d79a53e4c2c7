# Two commands do all set-up themselves: `make demo` and `make test`.
# Both create (or refresh) .venv and install the project with its test extras.
# torch/torchvision are pinned first so that no later step pulls a different build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench bench-fast clean docs browser

$(STAMP): setup.cfg pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS) setuptools wheel
	# sam2 ships as source only: build it against the pinned torch (an isolated build would fetch another torch)
	SAM2_BUILD_CUDA=0 $(PIP) install -q --no-build-isolation "sam2>=1.1" $(TORCH_PINS)
	$(PIP) install -q -e ".[test]" $(TORCH_PINS)
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hlmat demo

# the browser test (tests/test_play_browser.py) drives Debian's chromium through chromium-driver; without root
# the install is skipped with a message and that test skips
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" != 0 ]; then echo "make browser: not root: cannot apt-get install chromium chromium-driver; the browser test will skip"; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
	  || echo "make browser: apt-get install chromium chromium-driver failed; the browser test will skip"; fi

test: $(STAMP) browser
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n 2 -q
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d build/site

test-fast: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n 2 -q -m "not slow"

# the results suite: every number the README and docs/results/ quote (about 35 min on 2 cores)
bench: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/hlmat results

# the same code on a few samples (CI runs it through tests/test_results.py); writes build/results-fast/
bench-fast: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(VENV)/bin/hlmat results --fast

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -d build/site

clean:
	rm -rf $(VENV) build *.egg-info results
