# tcfuzz: `make test` (CI), `make fuzz` (the main job, bounded), `make nightly`. Both use .venv, created on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint fuzz nightly report clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -n 2 -m 'not nightly'

# mypy reads source trees, not the editable install's folder mapping: build/typecheck/tcfuzz is the
# installed layout made of symlinks to the design card's folders.
TYPECHECK := build/typecheck
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/tcfuzz
	for entry in fuzz/*; do ln -s ../../../$$entry $(TYPECHECK)/tcfuzz/; done
	for pkg in model jit_old jit_new; do ln -s ../../../$$pkg $(TYPECHECK)/tcfuzz/$$pkg; done
	cd $(TYPECHECK) && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p tcfuzz

# A bounded differential run (about a minute) on the built-in profiles: artifacts, summary.json and
# junit.xml under fuzz-artifacts/. An empty fuzz-corpus/ starts from the regression corpus encoded as
# seeds, and the engine gets fuzzers/tailcall_fuzzer.dict (fuzz/frontends/seeds.py). Fails only on a
# divergence without a proved known cause (fuzz/verdict/policy.py); drop --ignore-known (or run
# `tcfuzz fuzz` directly) to fail on every divergence.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/tcfuzz fuzz --corpus fuzz-corpus --artifacts fuzz-artifacts --max-time $(FUZZ_SECONDS) --ignore-known \
		-- -len_control=0 -print_final_stats=0

# Unattended nightly, bounded end to end by NIGHTLY_SECONDS: a quarter of it for the property suite on
# the Hypothesis `nightly` profile (TCFUZZ_HYPOTHESIS_SECONDS stops each test when its share is spent),
# the rest, less NIGHTLY_MARGIN for start-up and the summary, for a fuzz run on both cores. Both
# steps always run, both model orders (the pre-2026
# interpreter's counter order shows as JITS_AGREE_MODEL_DIFFERS). It fails only on a divergence
# without a proved known cause (fuzz/verdict/policy.py); known ones
# are in fuzz-artifacts/summary.json and junit.xml, and `make report` puts everything on one page.
NIGHTLY_SECONDS ?= 3600
NIGHTLY_MARGIN  ?= 60
nightly: $(STAMP)
	@start=$$(date +%s); status=0; \
	TCFUZZ_HYPOTHESIS=nightly TCFUZZ_MODEL_ORDER=both TCFUZZ_HYPOTHESIS_SECONDS=$$(( $(NIGHTLY_SECONDS) / 4 )) \
		$(BIN)/pytest -n 2 -p no:cacheprovider -rs tests/test_properties.py || status=1; \
	left=$$(( $(NIGHTLY_SECONDS) - $(NIGHTLY_MARGIN) - ($$(date +%s) - start) )); \
	if [ $$left -ge 10 ]; then \
		$(BIN)/tcfuzz fuzz --corpus fuzz-corpus --artifacts fuzz-artifacts --max-time $$left --fork 2 --ignore-known \
			--model-order both \
			-- -ignore_crashes=1 -len_control=0 || status=1; \
	else echo "make nightly: no time left for the fuzz run"; fi; \
	echo "make nightly: $$(( $$(date +%s) - start )) s of $(NIGHTLY_SECONDS)"; exit $$status

# The evidence on one page: report/report.{json,md,html} (includes fuzz-artifacts/ when a fuzz run left one).
report: $(STAMP)
	$(BIN)/tcfuzz report $(if $(wildcard fuzz-artifacts/summary.json),--from fuzz-artifacts) --out report

# Everything the targets create: the venv, build files, fuzz corpus and artifacts (summary, JUnit,
# libFuzzer's log, the hidden per-process stats), the report, and the caches of pytest, Hypothesis and ruff.
clean:
	rm -rf $(VENV) build *.egg-info tcfuzz.egg-info fuzz-corpus fuzz-artifacts report \
		.pytest_cache .hypothesis .ruff_cache .mypy_cache
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
