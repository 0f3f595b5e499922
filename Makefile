# Two commands on a fresh machine: `make demo` (the main job) and `make test` (all checks).
# Both set themselves up: system packages (Debian, when root), a virtualenv, the project (editable).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
REF    ?= ../shared/reference/idm-official
MODEL  ?= $(firstword $(wildcard $(REF)/checkpoint/*.ckpt))
SYSTEM_PACKAGES := libsndfile1 libportaudio2 libasound2 jackd2 hydrogen-drumkits avldrums.lv2-soundfont lmms-common sonic-pi-samples
TORCH  ?= torch==2.13.0

.PHONY: setup system demo test lint bench clean

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "please install these system packages:$$missing (audio/MIDI I/O and the training kits need them)"; fi; \
	fi

$(STAMP): pyproject.toml
	$(MAKE) system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev,export,train,eval,live]"
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/idm-live --input demo --seconds 21 --no-midi --stems-out out/demo --force
	$(BIN)/idm demo --out out/demo-kit-transfer --kit-from "AVL Red Zeppelin 4"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy idm export runtime

test: lint
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_separate.py
	$(BIN)/python benchmarks/bench_live.py

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
