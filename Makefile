# The two commands of the README: `make demo` and `make test`. Both set up
# everything they need (a virtualenv from requirements.txt) on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)

# The embedded default: SQLite in var/, no Redis, the offline template provider. DEBUG stays
# off, as in production, so each command gets a random SECRET_KEY of its own (nothing it
# signs outlives the command).
DEMO_ENV := DATABASE_URL=sqlite:///var/demo.sqlite3 REDIS_URL= CELERY_BROKER_URL= LLM_PROVIDER=template \
	SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')

.PHONY: demo test install migrate run worker beat clean

install: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	mkdir -p var
	rm -f var/demo.sqlite3
	$(DEMO_ENV) $(PY) manage.py migrate --verbosity 0
	@echo "== 1ª execução do catálogo: memória fria; uma geração por família de variantes (parent_sku), cada variante derivada dela (veja Tokens economizados por famílias) =="
	$(DEMO_ENV) $(PY) manage.py generate_content samples/catalog.csv
	@echo "== 2ª execução do catálogo: o mesmo catálogo vem da memória =="
	$(DEMO_ENV) $(PY) manage.py generate_content samples/catalog.csv

test: install
	$(PY) -m pytest

migrate: install
	$(PY) manage.py migrate

run: install
	$(PY) manage.py runserver

# Runs the tasks the API, the admin and beat queue (needs CELERY_BROKER_URL or REDIS_URL).
worker: install
	$(PY) -m celery -A beecatalog worker --loglevel INFO

# Sends the scheduled jobs to the worker when due; run exactly one.
beat: install
	$(PY) -m celery -A beecatalog beat --loglevel INFO

clean:
	rm -rf var .pytest_cache
