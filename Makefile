# Every target bootstraps .venv by itself, so `make run` and `make test` are the only two
# commands a fresh machine needs. The venv is re-installed only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BIN := $(VENV)/bin

.PHONY: run test bench lint screenshots clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/zakura console

# The suite runs on pytest-xdist workers (TEST_WORKERS=0 runs it in one process). The tests
# marked `wallclock` watch real processes for a fixed two minutes and compute little, so they
# run in a lane of their own, started first, beside the workers: the suite's wall time is then
# the workers' share of the rest. Their report is printed after the workers'; either failing
# fails `make test`.
TEST_WORKERS ?= 2

test: $(STAMP)
	@lane=$$(mktemp); \
	$(BIN)/pytest -p no:xdist -m wallclock >$$lane 2>&1 & lane_pid=$$!; \
	$(BIN)/ruff check . && $(BIN)/mypy \
	  && $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal -m 'not wallclock'; rc=$$?; \
	wait $$lane_pid; lane_rc=$$?; \
	echo "--- the wallclock lane (pytest -m wallclock, run beside the workers) ---"; \
	cat $$lane; rm -f $$lane; \
	test $$rc -eq 0 && test $$lane_rc -eq 0

bench: $(STAMP)
	$(BIN)/python -m bench

screenshots: $(STAMP)
	$(BIN)/python -m console.screenshots --out screenshots

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
