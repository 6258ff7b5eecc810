# csrgate: `make demo` runs the main job; `make test` is what CI runs.
CARGO ?= cargo
CSRGATE := target/debug/csrgate

.PHONY: test fmt-check clippy unit check-examples crd bench bench-engine build demo bench-sandbox bench-e2e bench-real
.PHONY: kube helm cluster-up cluster-down

## test: formatting, lints, then every test of the workspace (what .ci/run calls), the
## tests against the real control plane among them (built first by `make kube`)
test: fmt-check clippy kube helm unit

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

## crd: regenerate crds/ from the Rust types (and its copies in deploy/base and the chart)
crd: build
	$(CSRGATE) crd > crds/csrapprovalpolicies.csrgate.dev.yaml
	cp crds/csrapprovalpolicies.csrgate.dev.yaml deploy/base/crds/
	cp crds/csrapprovalpolicies.csrgate.dev.yaml charts/csrgate/crds/

## bench: every benchmark side by side in one run (engine, cel-js and cel-python peers, end to
## end with the API floor at N = 1,000/10,000/50,000 on the sandbox and on kube-apiserver,
## against kube-controller-manager's approver, scale for the glibc and the image's static musl
## build); writes target/bench/summary.json, BENCHMARKS.md and bench/e2e.svg. Not run by CI.
## Needs node/npm and python3 (installs the peers), musl-gcc (musl-tools), and `make kube`.
bench:
	bash bench/run.sh

## bench-engine: only the engine's criterion benchmarks; medians in target/criterion
bench-engine:
	$(CARGO) bench --locked -p csrgate-policy --bench decide

## bench-e2e: one burst of 5,000 CSRs, decided by the controller and by the API floor
bench-e2e:
	$(CARGO) build --release --locked -p csrgate -p csrgate-bench
	target/release/csrgate-bench e2e --csrs 5000

## bench-real: the real control plane only (`make kube`): controller against the API floor,
## and csrgate against kube-controller-manager's approver, 1,000 CSRs each
bench-real: kube
	$(CARGO) build --release --locked -p csrgate -p csrgate-bench
	target/release/csrgate-bench real --csrs 1000 --kcm-csrs 1000 --kcm-qps 1000

## bench-sandbox: requests per second of the sandbox API server on loopback
bench-sandbox:
	$(CARGO) bench --locked -p csrgate-sandbox --bench throughput

.PHONY: image deploy-render deploy-crd

## image: the container image deploy/ runs (Dockerfile: static musl binary on distroless, non-root)
image:
	docker build --build-arg CSRGATE_GIT_COMMIT=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) -t csrgate:dev .

## deploy-render: render the kustomize install offline (what `kubectl apply -k deploy/` applies)
deploy-render:
	kubectl kustomize deploy/

## deploy-crd: copy the generated CRD into deploy/base (kustomize cannot read files outside it)
deploy-crd:
	cp crds/csrapprovalpolicies.csrgate.dev.yaml deploy/base/crds/csrapprovalpolicies.csrgate.dev.yaml

# The real Kubernetes control plane, for tests and benchmarks only (tools/kube is its Go
# module). The version comes from tools/kube/go.mod; the ldflags stamp it as Kubernetes'
# own build does (hack/lib/version.sh), so that kubectl and clients see v1.N.x.
GO ?= go
KUBE_BIN := target/kube/bin
KUBE_VERSION := $(shell sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\)$$/\1/p' tools/kube/go.mod)
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
# -s -w: no symbol table or DWARF, as Kubernetes' release binaries; links faster and makes
# them about a third smaller (kube-apiserver 170 MB to 119 MB here).
KUBE_LDFLAGS := -s -w $(foreach pkg,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(pkg).gitVersion=$(KUBE_VERSION) -X $(pkg).gitMajor=1 -X $(pkg).gitMinor=$(KUBE_MINOR) \
	-X $(pkg).gitTreeState=clean)

## kube: build etcd, kube-apiserver, kube-controller-manager and kubectl into target/kube/bin
## from tools/kube (Go 1.26; reuses Go's build and module caches; only when go.mod/go.sum change)
kube: $(KUBE_BIN)/.built

$(KUBE_BIN)/.built: tools/kube/go.mod tools/kube/go.sum tools/kube/cmd/etcd/main.go
	@command -v $(GO) >/dev/null 2>&1 || { echo "make kube: Go 1.26 is needed to build the control plane, and go is not on PATH" >&2; exit 1; }
	@test -n "$(KUBE_VERSION)" || { echo "make kube: no k8s.io/kubernetes version in tools/kube/go.mod" >&2; exit 1; }
	@mkdir -p $(KUBE_BIN)
	cd tools/kube && $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o ../../$(KUBE_BIN)/ \
		./cmd/etcd k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl
	@touch $@

## cluster-up: start etcd, kube-apiserver and kube-controller-manager on 127.0.0.1; writes
## target/cluster/kubeconfig and returns once they are ready
cluster-up: kube
	$(CARGO) run --locked -q -p csrgate-kube -- up --dir target/cluster

## cluster-down: stop what cluster-up started and remove target/cluster
cluster-down:
	$(CARGO) run --locked -q -p csrgate-kube -- down --dir target/cluster

# Helm, for the chart's tests only (tools/helm is its Go module, apart from tools/kube because
# helm pins its own k8s.io client libraries). The ldflags are those of helm's own Makefile: its
# version, and the Kubernetes version `helm template`/`lint` assume (that of its client-go).
HELM_VERSION := $(shell sed -n 's/^.*helm\.sh\/helm\/v3 \(v[0-9.]*\)$$/\1/p' tools/helm/go.mod)
HELM_K8S_MINOR := $(word 2,$(subst ., ,$(shell sed -n 's/^[[:space:]]*k8s.io\/client-go \(v[0-9.]*\).*$$/\1/p' tools/helm/go.mod)))
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	$(foreach pkg,helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil,\
	-X $(pkg).k8sVersionMajor=1 -X $(pkg).k8sVersionMinor=$(HELM_K8S_MINOR))

## helm: build helm into target/kube/bin from tools/helm (only when its go.mod/go.sum change)
helm: $(KUBE_BIN)/.helm-built

$(KUBE_BIN)/.helm-built: tools/helm/go.mod tools/helm/go.sum
	@command -v $(GO) >/dev/null 2>&1 || { echo "make helm: Go 1.26 is needed to build helm, and go is not on PATH" >&2; exit 1; }
	@test -n "$(HELM_VERSION)" -a -n "$(HELM_K8S_MINOR)" || { echo "make helm: no helm.sh/helm/v3 or k8s.io/client-go version in tools/helm/go.mod" >&2; exit 1; }
	@mkdir -p $(KUBE_BIN)
	cd tools/helm && $(GO) build -trimpath -ldflags '$(HELM_LDFLAGS)' -o ../../$(KUBE_BIN)/helm helm.sh/helm/v3/cmd/helm
	@touch $@
