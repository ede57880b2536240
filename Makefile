# The two commands: `make run` starts everything, `make test` runs the whole suite.
# Both install what is missing first (Debian packages, the virtualenv, the simulator build).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# What the product runs (requirements.txt), and on top of it what tests and linters need (requirements-dev.txt).
REQ_STAMP := $(VENV)/.requirements-run-$(shell cat requirements.txt | sha256sum | cut -c1-16)
DEV_STAMP := $(VENV)/.requirements-dev-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
VCSIM := .cache/bin/vcsim
AZURITE := tools/azurite/node_modules/.bin/azurite-blob
AZURITE_STAMP := tools/azurite/node_modules/.installed-stamp
OIDC_PROVIDER := tools/oidc-provider/node_modules/oidc-provider/package.json
OIDC_PROVIDER_STAMP := tools/oidc-provider/node_modules/.installed-stamp

.PHONY: run test lint check install system-packages-run system-packages-test system-packages-bench vcsim azurite oidc-provider clean bench-inventory bench-backup bench-vault bench-restore bench-catalog bench-listing bench-instant bench-restore-test bench-scale chaos

run: system-packages-run $(REQ_STAMP) $(VCSIM)
	$(PY) tools/run.py

test: system-packages-test $(DEV_STAMP) $(VCSIM) azurite oidc-provider lint check
	$(PY) tools/test.py

# Ruff, then mypy over the product (settings in pyproject.toml); the storage engine and the only pyVmomi
# package are held to --strict. Settings load from a throwaway data directory (the Django plugin imports them).
lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DATA_DIR=$$(mktemp -d) $(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict vault/engine inventory/vcenter instant/view instant/nfs.py

# Django's own checks, on a throwaway data directory so a developer's data is never touched.
check: $(REQ_STAMP)
	DATA_DIR=$$(mktemp -d) $(PY) manage.py check --fail-level WARNING
	DATA_DIR=$$(mktemp -d) $(PY) manage.py makemigrations --check --dry-run

install: system-packages-test $(DEV_STAMP) $(VCSIM)

system-packages-run:
	@tools/system-packages.sh run

system-packages-test:
	@tools/system-packages.sh test

$(REQ_STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.requirements-run-* && touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.requirements-dev-* && touch $@

$(VCSIM): $(wildcard tools/vcsim/*.go) tools/simulator.py $(REQ_STAMP)
	$(PY) -m tools.simulator --build

vcsim: $(VCSIM)

# Azurite (the Azure Storage emulator) at the version pinned in tools/azurite/package-lock.json, for the
# vault's tests and benchmarks. npm ci again when the lock file changed or the emulator is missing;
# no install scripts: Azurite needs none (npm 11 skips them anyway, npm 9 would run them).
$(AZURITE_STAMP): tools/azurite/package-lock.json $(if $(wildcard $(AZURITE)),,FORCE) | system-packages-test
	cd tools/azurite && npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

azurite: $(AZURITE_STAMP)

# The OpenID Connect provider standing in for Microsoft Entra ID in the sign-in tests (tools/oidc_server.py):
# panva's oidc-provider at the version pinned in tools/oidc-provider/package-lock.json, installed like Azurite.
$(OIDC_PROVIDER_STAMP): tools/oidc-provider/package-lock.json $(if $(wildcard $(OIDC_PROVIDER)),,FORCE) | system-packages-test
	cd tools/oidc-provider && npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

oidc-provider: $(OIDC_PROVIDER_STAMP)

FORCE:

# Benchmarks print figures; they assert nothing (speed is measured, not asserted in tests).
# Full syncs of 1,000, 10,000 and 50,000 simulated VMs (seconds, RSS, queries), the VM list page, and live
# changes through the inventory watcher at 50,000 VMs (about 2.5 minutes; the 50,000-VM simulator takes 25-35 s to start).
bench-inventory: system-packages-test $(DEV_STAMP) $(VCSIM)
	$(PY) tools/bench_inventory.py

# Full backup, 1% incremental (with and without CBT) and restore of a 1 GiB image, beside Debian's restic.
bench-backup: system-packages-bench $(DEV_STAMP)
	$(PY) tools/bench_backup.py

# Replication of a 1 GiB point to Azurite and to a directory vault, beside plain uploads of the same
# chunks, and a 1% incremental replication.
bench-vault: system-packages-test $(DEV_STAMP) azurite
	$(PY) tools/bench_vault.py

# Time to the first listing of a 4 GiB NTFS point, a 512 MiB file download, and a 1 GiB disk restored
# through the simulator, beside ntfs-3g's tools and a plain upload.
bench-restore: system-packages-test $(DEV_STAMP) $(VCSIM)
	$(PY) tools/bench_restore.py

# The file catalog at 50 VMs x 20,000 files x 30 points (1% changed per point) on a private
# PostgreSQL: size against one point's catalog, search p50/p95, cataloguing rates.
bench-catalog: system-packages-test $(DEV_STAMP)
	$(PY) tools/bench_catalog.py

# One page of a folder of 100,000 files (live, and through the listing index the catalog writes) against
# one page of a folder of 10, on a real NTFS disk (built once, then cached in .cache/diskimages).
bench-listing: system-packages-test $(DEV_STAMP)
	$(PY) tools/bench_listing.py 100000

# Instant recovery of a 1 GiB and a 32 GiB point (request to powered on, bytes read before it), random and
# sequential reads over NFS beside a plain file exported by the same ganesha, and a full restore of each.
bench-instant: system-packages-test $(DEV_STAMP) $(VCSIM)
	$(PY) tools/bench_instant.py

# A restore test (issue 17) of a 1 GiB and a 32 GiB point: start to proven, each step's seconds and the bytes
# read from the store, beside a full restore of the same point (the simulator's guest boots in 1 s).
bench-restore-test: system-packages-test $(DEV_STAMP) $(VCSIM)
	$(PY) tools/bench_restore_test.py

# Two worker machines (own process trees, DATA_DIRs, MACHINE_NAMEs, workers and schedulers) sharing one
# PostgreSQL, Redis and store, 40 VMs (issue 18 item 3): backups per VM per slot, MAX_CONCURRENT_BACKUPS
# sampled, a GC beside backups, one machine SIGKILLed and its VMs backed up by the other at the next slot.
bench-scale: system-packages-test $(DEV_STAMP) $(VCSIM)
	$(PY) -m tools.bench_scale

# Faults injected into the real stack (workers, Redis, PostgreSQL, the simulator, Azurite), with a
# table of what was lost, stuck or left; non-zero exit if anything was. Not part of `make test`.
# CHAOS_ARGS passes options: --quick, --seed N, --only SCENARIO, --vault directory.
chaos: system-packages-test $(DEV_STAMP) $(VCSIM) azurite
	$(PY) -m tools.chaos $(CHAOS_ARGS)

system-packages-bench:
	@tools/system-packages.sh bench

clean:
	rm -rf .cache $(VENV)
