# Two commands: `make demo` and `make test`. Both create .venv when missing and install into it;
# torch is installed first, constraints.txt's version in its CPU build, so CPU machines never pull CUDA wheels (where no
# source has that build, the install stops and says so). scripts/install.py installs through uv with pip's settings,
# or through pip where uv cannot (BBUVL_INSTALLER=pip: pip alone).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo_out

.PHONY: demo demo-rl test test-all install fonts browsers clean

# A .venv with no pip (its creation cut short by Ctrl-C, or made by `uv venv`) gets one from ensurepip; one of too old
# a Python, or still without pip and holding nothing else, is created again (--clear: over what is left of it); one
# that is unfit but holds packages (a torch installed by hand) is left as it is, and install.py --check says what to do
# (exit 2).
$(STAMP): pyproject.toml constraints.txt scripts/install.py
	rc=0; test -x $(PY) && { $(PY) scripts/install.py --check || rc=$$?; } || rc=1; \
	if [ $$rc = 1 ]; then $(PYTHON) -m venv --clear $(VENV); elif [ $$rc != 0 ]; then exit $$rc; fi
	$(PY) scripts/install.py dev
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BYTECODE)
	BBUVL_DEMO_OUT=$(DEMO) bash scripts/demo.sh

# GRPO after stage A (docs/grpo.md): stage A first when $(DEMO)/shapes/run/final is missing.
demo-rl: $(STAMP)
	$(BYTECODE)
	BBUVL_DEMO_OUT=$(DEMO) bash scripts/demo_rl.sh

# lint-imports: the layers contract in pyproject.toml (every import points down, docs/architecture.md).
# Two pytest workers, one test file each at a time: most tests use one thread, so two keep both cores busy; the
# learning guards go first and train at one thread each (tests/conftest.py, tests/threads.py). xdist would reorder
# the files by test count and start the guard last, alone: --no-loadscope-reorder keeps ours. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
# src/ compiled ahead: where PYTHONDONTWRITEBYTECODE is set (images often set it), Python writes no bytecode but still
# reads it, so without this every `bbuvl` child process the tests and the demo start compiles the package again (3 s
# of CPU for all of it on a 2-core AMD EPYC; the eval CLI tests 3-6% less CPU with it).
BYTECODE := $(PY) -m compileall -q src > /dev/null

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(BYTECODE)
	$(PYTEST)

test-all: $(STAMP)
	$(VENV)/bin/lint-imports
	$(BYTECODE)
	$(PYTEST) -m "slow or not slow"

# Optional: a CJK font so reports draw Chinese labels (without one they fall back to English glosses, with a warning);
# browsers: headless Chromium for the report and page tests. The same script .ci/run calls.
fonts:
	bash scripts/system_packages.sh fonts

browsers:
	bash scripts/system_packages.sh chromium

# The demo's folder only when the demo wrote it (scripts/demo_out.sh): DEMO= can name any folder.
clean:
	bash scripts/demo_out.sh remove "$(DEMO)"
	rm -rf $(VENV) .pytest_cache build
