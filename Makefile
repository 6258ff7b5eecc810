# csrgate: `make demo` runs the main job; `make test` is what CI runs.
CARGO ?= cargo
CSRGATE := target/debug/csrgate

.PHONY: test fmt-check clippy unit check-examples crd bench build demo bench-sandbox bench-e2e

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

## bench: engine benchmarks (criterion); medians in target/criterion
bench:
	$(CARGO) bench --locked -p csrgate-policy --bench decide

## bench-e2e: 5,000 CSRs in a burst through the controller and sandbox processes
bench-e2e:
	$(CARGO) bench --locked -p csrgate --bench e2e -- 5000

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
