# The two entry points (see README): `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint clean

$(BIN)/craft: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,tracr]'
	touch $(BIN)/craft

demo: $(BIN)/craft
	$(BIN)/craft compile specs/library/toy_language.yaml -o out/toy_standard.safetensors --family standard
	$(BIN)/craft eval out/toy_standard.safetensors --spec specs/library/toy_language.yaml
	$(BIN)/craft compile specs/library/toy_language.yaml -o out/toy_tensor.safetensors --family tensor
	$(BIN)/craft eval out/toy_tensor.safetensors --spec specs/library/toy_language.yaml
	$(BIN)/craft compile specs/library/toy_language.yaml -o out/toy_2x4x64.safetensors --shape 2x4x64 --attn-only
	$(BIN)/craft eval out/toy_2x4x64.safetensors --spec specs/library/toy_language.yaml

# The HTML report tests render in a real headless browser: Debian's chromium, installed
# when missing (as root, or through sudo) so `make test` works on a fresh CI machine.
CHROMIUM_INSTALL = apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium

test: $(BIN)/craft
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && ($(CHROMIUM_INSTALL)) || sudo sh -c '$(CHROMIUM_INSTALL)'; }
	$(BIN)/python -m pytest

lint: $(BIN)/craft
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) out
