# The two commands of the README: `make run` and `make test`. Everything they need is installed
# here, on a fresh clone of this machine kind; nothing is done by hand.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when a requirements file changed.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt tidkit/pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
# tidkit's compiled part (tidkit._hamming), built in the tree that the server imports tidkit from;
# rebuilt when its source or the venv changes (the stamp lives in the ignored build folder).
TIDKIT_EXT := tidkit/build/.extension-built

.PHONY: run test lint venv chromium messages clean tidkit-extension

run: $(STAMP) $(TIDKIT_EXT) node_modules/.installed messages
	@scripts/run.sh

test: $(STAMP) $(TIDKIT_EXT) node_modules/.installed chromium messages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DATABASE_URL=sqlite:///:memory: $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

venv: $(STAMP) $(TIDKIT_EXT)

$(STAMP): requirements.txt requirements-dev.txt tidkit/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

tidkit-extension: $(TIDKIT_EXT)

$(TIDKIT_EXT): tidkit/_hamming.c tidkit/setup.py $(STAMP)
	cd tidkit && ../$(BIN)/python setup.py --quiet build_ext --inplace
	touch $@

# The browser's JavaScript dependencies (@noble/hashes for MD5), exactly as package-lock.json
# pins them; the static files are served from node_modules with no build step. Reinstalled only
# when the package files change.
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }
	npm ci --no-audit --no-fund
	touch $@

# Translations (English and Spanish) are compiled from locale/*.po; the .mo files are not in git.
messages: $(STAMP) $(TIDKIT_EXT)
	@command -v msgfmt >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext >/dev/null; }
	@$(BIN)/python manage.py compilemessages --ignore=.venv --verbosity 0

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	}

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis tidkit/build tidkit/_hamming.*.so
