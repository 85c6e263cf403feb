# The platform's entry points. `make demo` and `make test` are the quick start.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
ENV ?= dev
# jsii (the CDK's Python bridge) and the CDK CLI run on the pinned Node 22 from node_modules.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$(PATH)

# Every Python dependency, pinned with hashes (`make lock` writes it), installed by uv.
LOCK := requirements.lock
# checkov lives in a virtualenv of its own (its pins conflict with the project's), locked alike
CHECKOV_VENV := .venv-checkov
CHECKOV_LOCK := tools/checkov.lock
UV_VERSION := 0.13.9
# The local platform's own Spark classes (its commit protocol), compiled by the JDK's javac
SPARK_EXTENSION := .jars/dataplatform-local-spark.jar
UV := $(BIN)/uv
# It keeps the versions already in the output file unless pyproject.toml asks otherwise.
LOCK_COMPILE := UV_CUSTOM_COMPILE_COMMAND='make lock' $(UV) pip compile --quiet pyproject.toml \
  --extra dev --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28

.PHONY: setup setup-parts lock lint demo describe down test conformance synth scan deploy diff destroy bench clean

# .venv with the pinned uv in it (pip installs uv itself; uv does the rest; `uv pip sync`
# keeps pip, setuptools and uv and removes whatever else the lock does not name).
define venv-with-uv
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
endef

# `uv pip check` checks what installed packages require, but not their extras: this checks
# that .venv (that is, the lock) meets every pin of .[dev] in pyproject.toml, extras included,
# so a pin changed without `make lock` fails the setup instead of installing the old version.
define LOCK_MATCHES_PYPROJECT
from importlib.metadata import PackageNotFoundError, requires, version
from packaging.requirements import Requirement
def unmet(req, seen):
    try:
        found = version(req.name)
    except PackageNotFoundError:
        return [f"{req}: not in the lock"]
    problems = [] if req.specifier.contains(found, prereleases=True) else [f"{req}: the lock has {found}"]
    for extra in sorted(req.extras - seen.get(req.name, set())):
        seen.setdefault(req.name, set()).add(extra)
        for line in requires(req.name) or []:
            sub = Requirement(line)
            if sub.marker and "extra" in str(sub.marker) and sub.marker.evaluate({"extra": extra}):
                problems += unmet(sub, seen)
    return problems
problems = unmet(Requirement("dataplatform[dev]"), {})
if problems:
    raise SystemExit("$(LOCK) does not match pyproject.toml (run `make lock`):\n  " + "\n  ".join(problems))
endef
$(VENV)/.installed: export LOCK_CHECK = $(LOCK_MATCHES_PYPROJECT)

# aws-cdk-lib and its own dependency aws-cdk.cloud-assembly-schema both ship the file
# aws_cdk/cloud_assembly_schema/__init__.py. uv installs wheels side by side, so either copy
# could be left; with the dependency's, jsii cannot resolve the CDK's synthesis messages
# ("Unknown interface: aws-cdk-lib.cloud_assembly_schema.MetadataEntry"). pip installs
# dependencies first, so aws-cdk-lib's copy is the one it leaves: this checks for that copy.
define CDK_SCHEMA_IS_CDK_LIBS
import base64, hashlib, sys
from importlib.metadata import distribution
record = next(f for f in distribution("aws-cdk-lib").files if str(f) == "aws_cdk/cloud_assembly_schema/__init__.py")
digest = base64.urlsafe_b64encode(hashlib.sha256(record.locate().read_bytes()).digest()).rstrip(b"=").decode()
if digest != record.hash.value:
    sys.exit("aws_cdk/cloud_assembly_schema/__init__.py is aws-cdk.cloud-assembly-schema's copy, not aws-cdk-lib's")
endef
$(VENV)/.installed: export CDK_SCHEMA_CHECK = $(CDK_SCHEMA_IS_CDK_LIBS)

## setup: .venv with the package and its dev extras, the pinned CDK CLI, the Spark S3 jars, checkov
## Its parts run side by side where their prerequisites allow (npm beside uv, then the jars
## beside checkov's venv), each part's output printed in one piece.
setup:
	@$(MAKE) --no-print-directory --jobs=4 --output-sync=target setup-parts

setup-parts: $(VENV)/.installed node_modules/.installed .jars/.fetched $(SPARK_EXTENSION) \
  $(CHECKOV_VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(venv-with-uv)
	# --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set (these machines
	# set it), nothing is ever compiled later, and every process (train.py, Spark's Python
	# workers, dp) paid 2-3 s to compile scikit-learn, pandas and matplotlib again.
	$(UV) pip sync --python $(BIN)/python --require-hashes --compile-bytecode $(LOCK)
	$(UV) pip install --python $(BIN)/python --no-deps -e .
	@$(BIN)/python -c "$$CDK_SCHEMA_CHECK" || $(UV) pip install --python $(BIN)/python \
	  --require-hashes --no-deps --compile-bytecode --reinstall-package aws-cdk-lib -r $(LOCK)
	@$(BIN)/python -c "$$CDK_SCHEMA_CHECK"
	$(UV) pip check --python $(BIN)/python
	@$(BIN)/python -c "$$LOCK_CHECK"
	@touch $@

## lock: rewrite requirements.lock after changing pyproject.toml (LOCK_ARGS=--upgrade also moves unpinned ones)
lock:
	$(venv-with-uv)
	$(LOCK_COMPILE) --output-file $(LOCK) $(LOCK_ARGS)
	UV_CUSTOM_COMPILE_COMMAND='make lock' $(UV) pip compile --quiet tools/checkov.in \
	  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --output-file $(CHECKOV_LOCK) $(LOCK_ARGS)

$(CHECKOV_VENV)/.installed: $(CHECKOV_LOCK) $(VENV)/.installed
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(CHECKOV_VENV)
	$(UV) pip sync --quiet --python $(CHECKOV_VENV)/bin/python --require-hashes $(CHECKOV_LOCK)
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(SPARK_EXTENSION): scripts/build_spark_extension.py $(wildcard dataplatform/runtime/local/jvm/*.java) .jars/.fetched
	$(BIN)/python scripts/build_spark_extension.py $@

.jars/.fetched: scripts/fetch_spark_jars.py scripts/spark-jars.pom.xml scripts/spark_jars.sha256 $(VENV)/.installed
	$(BIN)/python scripts/fetch_spark_jars.py .jars
	@touch $@

## demo: the main job on the embedded local platform: ingest, deliver, crawl, curate, query
demo: setup
	$(BIN)/dp --env $(ENV) demo

## describe: synthesize the stacks and describe their resources and physical names
describe: setup
	$(BIN)/python -m stacks.describe --env $(ENV)

## down: stop the local platform that `make demo` / `dp local up` left running
down: setup
	$(BIN)/dp local down

## lint: ruff's lint rules and its formatter's check over the repository, then mypy's type
## check of dataplatform/ and stacks/ ([tool.mypy] in pyproject.toml) (CI runs it first)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## test: setup + the whole test suite (slow end-to-end tests included), on TEST_WORKERS
## pytest-xdist workers. One process left a core idle much of the time (it waits on moto,
## Spark and subprocesses): on 2 cores, back to back, 841 s in one process, 505 s on two.
## Which tests share a worker, and why: tests/conftest.py.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest --numprocesses=$(TEST_WORKERS)

## conformance: moto's own test suite (5.2.5, in server mode) against plain moto_server and
## against the local platform's server; fails when a test passing on the first fails on the
## second (not part of make test: a few minutes on 2 cores; CONFORMANCE_FILES= narrows it)
conformance: setup
	$(BIN)/python scripts/moto_conformance.py

## synth: one CloudFormation template per stack in cdk.out/ (cdk-nag runs inside)
synth: setup
	npx cdk synth -c env=$(ENV) --quiet

## scan: cfn-lint and checkov over the synthesized templates in cdk.out/ (run `make synth`
## first), as tests/infra/test_nag_and_lint.py and test_checkov.py run them
scan: setup
	$(BIN)/python scripts/scan_templates.py cdk.out

## deploy: deploy every stack to ENV (dev|prod); bootstrap the account/region first
deploy: setup
	npx cdk deploy --all -c env=$(ENV) $(CDK_ARGS)

diff: setup
	npx cdk diff --all -c env=$(ENV)

destroy: setup
	npx cdk destroy --all -c env=$(ENV) $(CDK_ARGS)

bench: setup
	@for b in bench/*.py; do [ -e "$$b" ] || continue; echo "== $$b"; $(BIN)/python "$$b"; done

clean:
	rm -rf cdk.out build .pytest_cache .dp
