# arbook — the two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)

.PHONY: run test venv lock sandbox bench clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@bash scripts/ensure-venv.sh "$(PYTHON)" "$(VENV)"
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

## Serve the dashboard on 127.0.0.1:8000 with a Celery worker, the scheduler and the gateway sandbox.
run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	$(PY) manage.py seed_demo --if-empty
	$(PY) manage.py collectstatic --noinput -v0
	@echo "arbook: http://127.0.0.1:8000/  (Ctrl-C stops everything)"
	@echo "reminder e-mails: $$($(PY) manage.py send_reminders --where)"
	$(VENV)/bin/honcho -f Procfile start

## Run the whole suite against throwaway PostgreSQL and Redis servers (and headless Chromium).
test: venv
	bash scripts/with-services.sh $(PY) -m pytest $(PYTEST_ARGS)

## Serve only the gateway sandbox on 127.0.0.1:8900.
sandbox: venv
	$(PY) -m gateways.sandbox --port 8900

## Regenerate requirements.txt from requirements.in.
lock:
	$(PYTHON) -m venv /tmp/arbook-lock && /tmp/arbook-lock/bin/pip install -q -r requirements.in
	( echo "# Fully pinned resolution of requirements.in (make lock). Python 3.11."; \
	  /tmp/arbook-lock/bin/pip freeze ) > requirements.txt

clean:
	rm -rf $(VENV) var .pytest_cache
