# tcfuzz: `make test` (CI) and `make fuzz` (the main job). Both use .venv, created on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m 'not nightly'

# Until the differential fuzz front end lands, the main job is the reviewer's view:
# the legacy and patched tail-call sequences side by side for the default profile.
fuzz: $(STAMP)
	$(BIN)/tcfuzz disasm --kind static
	$(BIN)/tcfuzz disasm --kind dynamic
	$(BIN)/tcfuzz disasm --kind direct

clean:
	rm -rf $(VENV) build *.egg-info
