# docfactory — the two commands of the README:
#   make demo   set up, ingest real documents, ask a French question (embedded default)
#   make test   set up and run the test suite
.PHONY: install demo test test-quick lint typecheck protos check-protos bench clean

install:
	scripts/install.sh

demo: install
	scripts/demo.sh

test: install
	scripts/test.sh

test-quick: install
	.venv/bin/python -m pytest -m "not slow" -q

lint:
	.venv/bin/ruff check .

typecheck:
	.venv/bin/mypy

protos:
	.venv/bin/python scripts/gen_protos.py
	cd protos && buf lint

bench:
	.venv/bin/python bench/bench_ingestion.py

clean:
	rm -rf .venv .docfactory .pytest_cache .mypy_cache .ruff_cache
