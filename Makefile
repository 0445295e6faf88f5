# Sésame — an OpenID Connect login filter for Envoy (proxy-wasm).
#
#   make demo    Envoy + Sésame + three local providers (two OpenID, one
#                OAuth 2.0) + a demo upstream on http://127.0.0.1:10000/
#                (Ctrl-C stops everything)
#   make native  dist/libsesame.so: Sésame as an Envoy dynamic module (the
#                same core, configuration and behaviour, without a VM)
#   make test    every test: lint, unit tests, wasm and native builds, the
#                integration tests through a real Envoy and provider with each
#                build, and a headless browser login
#   make soak    a million authenticated requests and 3000 sign-ins through
#                Envoy, checking that the filter's memory stays flat (long;
#                not part of make test; options: SOAK_ARGS="--requests 100000")
#   make fuzz    the cargo-fuzz targets of fuzz/, FUZZ_SECONDS (default 60)
#                each; fails if one finds a crash
#   make bench   Sésame, wasm and native builds, against a bare Envoy, a
#                no-op wasm filter, Envoy's oauth2 filter and Apache +
#                mod_auth_openidc; writes docs/BENCHMARKS.md and
#                docs/benchmarks.svg (about 20 minutes; not part of make test;
#                BENCH_ARGS=--quick for a smoke run)
#   make screenshots  the screenshots of Sésame's pages in docs/images/pages/
#                (and pages.json, which test_pages.py checks they are current by)
#   make release the release artefacts in dist/: sesame-<version>.wasm, its
#                OCI image for Istio's WasmPlugin (the layout
#                sesame-<version>-oci/ and its archive sesame-<version>-oci.tar),
#                SHA256SUMS and a README on pushing and pinning the image
#                (scripts/release.py, Python's standard library only); prints
#                the module's sha256 and the image's manifest digest. The same
#                commit gives the same bytes (SOURCE_DATE_EPOCH, or the commit's
#                time, is the image's creation time)
#
# Everything needed is installed by the scripts in scripts/, into .tools/ and
# tests/node_modules/ where possible; second runs are quick.

SHELL := /bin/bash
PY := .tools/venv/bin/python
WASM := dist/sesame.wasm
NATIVE := dist/libsesame.so
CARGO_SRC := $(shell find src -name '*.rs') Cargo.toml $(wildcard Cargo.lock)

.PHONY: all wasm native integration-native release demo test screenshots soak bench bench-tools setup-bench unit lint integration browser setup setup-python setup-node setup-chromium setup-fuzz fuzz clean

all: wasm native

wasm: $(WASM)

$(WASM): $(CARGO_SRC) scripts/build-wasm.sh scripts/binaryen/package-lock.json
	@bash scripts/build-wasm.sh

native: $(NATIVE)

$(NATIVE): $(CARGO_SRC) scripts/build-native.sh
	@bash scripts/build-native.sh

# Python 3.11 or later (tomllib); no virtualenv needed.
RELEASE_PYTHON ?= python3

release: wasm native
	@$(RELEASE_PYTHON) scripts/release.py

setup-python:
	@bash scripts/setup-python.sh

setup-node:
	@bash scripts/setup-node.sh

setup-chromium:
	@bash scripts/setup-chromium.sh >/dev/null

setup-fuzz:
	@bash scripts/setup-fuzz.sh

setup: setup-python setup-node

demo: wasm setup
	@$(PY) scripts/demo.py

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cd fuzz && cargo fmt --check && RUSTC_BOOTSTRAP=1 cargo clippy --all-targets -- -D warnings
	@if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then \
		cargo clippy --target wasm32-wasip1 --lib -- -D warnings; \
	else echo "lint: wasm32-wasip1 target not installed through rustup; wasm clippy skipped"; fi
	cargo clippy --features native --lib -- -D warnings
	cargo clippy --all-targets --features native-crypto -- -D warnings

# The whole suite twice: with p256/p384's ECDSA checks (the wasm build's),
# and with ring's (the native build's, feature native-crypto).
unit:
	cargo test
	cargo test --features native-crypto --lib

FUZZ_SECONDS ?= 60

fuzz:
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh

integration: wasm native setup setup-chromium
	$(PY) -m pytest tests/tools tests/integration -q -rs

# The same integration tests with the native build (dist/libsesame.so),
# but those of the release artefacts and example files, which do not depend
# on the build Envoy loads (the wasm run checks the native examples too).
integration-native: native setup setup-chromium
	SESAME_BUILD=native $(PY) -m pytest tests/integration -q -rs \
		--ignore=tests/integration/test_release.py --ignore=tests/integration/test_istio.py \
		--ignore=tests/integration/test_examples.py

# Screenshots of Sésame's pages (docs/images/pages/, with pages.json, the
# hash of the HTML each was made from), through a real Envoy, in Chromium;
# test_pages.py fails when they are not current.
screenshots: wasm setup setup-chromium
	SESAME_SCREENSHOTS=write $(PY) -m pytest tests/integration/test_pages.py -q -p no:cacheprovider

test: lint unit integration integration-native

soak: wasm setup
	$(PY) scripts/soak.py $(SOAK_ARGS)

setup-bench:
	@bash scripts/setup-bench.sh

# The no-op wasm filter (setup 2; exporting only Sésame's callbacks, setups 2e
# and 2h), the no-op dynamic module (setups 2n and 2hn) and the session
# minting tool (memory figure).
bench-tools:
	@bash scripts/build-wasm.sh bench/noop-filter noop_filter target/bench/noop-filter.wasm all
	@bash scripts/build-wasm.sh bench/noop-filter noop_filter target/bench/noop-filter-lean.wasm sesame
	cargo build --release --quiet --manifest-path bench/mint-sessions/Cargo.toml --target-dir target
	cargo build --release --quiet --manifest-path bench/noop-native/Cargo.toml --target-dir target
	@mkdir -p target/bench/noop-native && cp target/release/libnoop_native.so target/bench/noop-native/libsesame.so

bench: wasm native setup setup-bench bench-tools
	$(PY) scripts/bench.py $(BENCH_ARGS)

clean:
	rm -rf target dist .tools/wasm-route fuzz/target
