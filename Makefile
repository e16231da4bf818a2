# The README's two commands: `make demo` and `make test`. Each installs what it needs.
.PHONY: demo test lint unit bench bench-bills lock setup clean

VENV := .venv/bin

setup:
	@scripts/bootstrap.sh dev

demo:
	@scripts/bootstrap.sh runtime
	$(VENV)/aifinops --db aifinops-demo.duckdb demo

lint: setup
	$(VENV)/ruff check src tests bench scripts
	$(VENV)/ruff format --check src tests bench scripts
	$(VENV)/mypy
	$(VENV)/lint-imports

unit: setup
	@scripts/test-services.sh
	$(VENV)/pytest -q

test: lint unit

bench: setup
	$(VENV)/python bench/allocation.py --gpus 1000 --days 30
	$(VENV)/python bench/bills.py --copies 781
	$(VENV)/python bench/recommend.py --gpus 1000 --days 30
	$(VENV)/python bench/forecast.py
	$(VENV)/python bench/engines.py --gpus 1000

# The CUR conversion alone (1M lines, vs the FinOps Foundation's focus-converter).
bench-bills: setup
	$(VENV)/python bench/bills.py --copies 781

# Re-pin every dependency, with hashes (needs the package registry).
lock:
	uv pip compile --quiet --generate-hashes --python-version 3.11 --no-emit-index-url \
		--no-header pyproject.toml -o requirements/runtime.txt
	uv pip compile --quiet --generate-hashes --python-version 3.11 --no-emit-index-url \
		--no-header --extra dev pyproject.toml -o requirements/dev.txt

clean:
	rm -rf .venv .tools aifinops-demo.duckdb aifinops-demo.yaml
