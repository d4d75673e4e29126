# swarmimager: `make help` lists the targets.
NODE ?= node
NPM ?= npm

.DEFAULT_GOAL := build
.PHONY: build typecheck test demo clean distclean help

build: | node_modules ## Bundle and build the executables dist/si-agent, dist/si-server (default)
	$(NODE) build.mjs

typecheck: | node_modules ## Type-check the sources and tests
	npx tsc --noEmit -p .

test: build typecheck ## Build, type-check, then run the test suite
	$(NODE) --import tsx --test --test-concurrency=1 test/*.test.ts

demo: build ## Build, then run scripts/demo.ts
	$(NODE) --import tsx scripts/demo.ts

clean: ## Remove dist/
	rm -rf dist

distclean: clean ## Also remove .cache/ (stripped base Node) and node_modules/
	rm -rf .cache node_modules

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-10s %s\n", $$1, $$2 }'

# Installed only when missing (order-only prerequisite above).
node_modules:
	$(NPM) ci
