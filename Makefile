# csrgate: `make demo` runs the main job; `make test` is what CI runs.
CARGO ?= cargo
CSRGATE := target/debug/csrgate

.PHONY: test fmt-check clippy unit check-examples crd bench bench-engine build demo bench-sandbox bench-e2e

## test: formatting, lints, then every test of the workspace (what .ci/run calls)
test: fmt-check clippy unit

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

build:
	$(CARGO) build --locked -p csrgate

## demo: the main job, no cluster needed: sandbox + controller + example policies and CSRs
demo: build
	$(CSRGATE) demo

## check-examples: decide the example CSRs offline and run the example test suites
check-examples: build
	$(CSRGATE) check --policy examples/policies --node examples/nodes/worker-1.yaml examples/csrs/*.yaml
	$(CSRGATE) test examples/tests

## crd: regenerate crds/ from the Rust types
crd: build
	$(CSRGATE) crd > crds/csrapprovalpolicies.csrgate.dev.yaml
	cp crds/csrapprovalpolicies.csrgate.dev.yaml deploy/base/crds/

## bench: every benchmark side by side in one run (engine, cel-js and cel-python peers, end to
## end with the API floor at N = 1,000/10,000/50,000, scale); writes target/bench/summary.json,
## BENCHMARKS.md and bench/e2e.svg. Not run by CI. Needs node/npm and python3 (installs the peers).
bench:
	bash bench/run.sh

## bench-engine: only the engine's criterion benchmarks; medians in target/criterion
bench-engine:
	$(CARGO) bench --locked -p csrgate-policy --bench decide

## bench-e2e: one burst of 5,000 CSRs, decided by the controller and by the API floor
bench-e2e:
	$(CARGO) build --release --locked -p csrgate -p csrgate-bench
	target/release/csrgate-bench e2e --csrs 5000

## bench-sandbox: requests per second of the sandbox API server on loopback
bench-sandbox:
	$(CARGO) bench --locked -p csrgate-sandbox --bench throughput

.PHONY: image deploy-render deploy-crd

## image: the container image deploy/ runs (Dockerfile: static musl binary on distroless, non-root)
image:
	docker build -t csrgate:dev .

## deploy-render: render the kustomize install offline (what `kubectl apply -k deploy/` applies)
deploy-render:
	kubectl kustomize deploy/

## deploy-crd: copy the generated CRD into deploy/base (kustomize cannot read files outside it)
deploy-crd:
	cp crds/csrapprovalpolicies.csrgate.dev.yaml deploy/base/crds/csrapprovalpolicies.csrgate.dev.yaml
