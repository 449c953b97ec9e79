# fleetbridge: `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
export GOTOOLCHAIN := local

ROOT := $(abspath .)
BIN := $(ROOT)/bin
K8S_BIN := $(BIN)/k8s
CONTROLLER_GEN := go tool -modfile=$(ROOT)/hack/tools/go.mod controller-gen

# Versions of the real control plane the tests run. hack/k8s/go.mod pins the same ones;
# changing either rebuilds the binaries (see the stamp file).
KUBE_VERSION := v1.36.3
ETCD_VERSION := v3.6.8
K8S_STAMP := $(K8S_BIN)/.stamp-$(KUBE_VERSION)-$(ETCD_VERSION)

export KUBEBUILDER_ASSETS := $(K8S_BIN)

# Argo CD's real ApplicationSet controller (one multi-call binary), built from hack/conformance's pin.
ARGOCD_BIN := $(BIN)/argocd
ARGOCD_STAMP := $(BIN)/.stamp-argocd-$(shell grep -m1 -o 'argo-cd/v2 v[0-9.]*' hack/conformance/go.mod | cut -d' ' -f2)
export ARGOCD_BINARY := $(ARGOCD_BIN)

# Argo CD v3's controller, for running the end-to-end tests a second time against Argo CD 3.x.
ARGOCD_V3_BIN := $(BIN)/argocd-v3
ARGOCD_V3_STAMP := $(BIN)/.stamp-argocd-v3-$(shell grep -m1 -o 'argo-cd/v3 v[0-9.]*' hack/argocd-v3/go.mod | cut -d' ' -f2)

# Flux Operator's controller (ResourceSetInputProvider and ResourceSet), for the Flux end-to-end test. It
# builds from a copy of its module with a placeholder web UI (see hack/flux-operator/go.mod).
FLUX_OPERATOR_VERSION := $(shell grep -m1 -o 'flux-operator v[0-9.]*' hack/flux-operator/go.mod | cut -d' ' -f2)
FLUX_OPERATOR_SRC := $(BIN)/flux-operator-src
FLUX_OPERATOR_BIN := $(BIN)/flux-operator
FLUX_OPERATOR_STAMP := $(BIN)/.stamp-flux-operator-$(FLUX_OPERATOR_VERSION)
export FLUX_OPERATOR_BINARY := $(FLUX_OPERATOR_BIN)

# The main module's tests write what fleetbridge produced here; hack/conformance feeds it to Argo CD's code.
FIXTURES := $(BIN)/fixtures

# Every Go module in the tree; verify tidies each one.
MODULES := . hack/tools hack/k8s hack/conformance hack/argocd-v3 hack/flux-operator

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: ## Generate deepcopy code for api/ and internal/clusterinventory.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/... paths=./internal/clusterinventory/...

.PHONY: manifests
manifests: ## Generate CRDs (config/crd/bases, and the Helm chart's crds/) and RBAC (config/rbac) from markers.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	rm -f config/helm/fleetbridge/crds/*.yaml && cp config/crd/bases/*.yaml config/helm/fleetbridge/crds/
	$(CONTROLLER_GEN) rbac:roleName=fleetbridge-manager paths=./registrar/... paths=./plugin/... paths=./internal/... output:rbac:artifacts:config=config/rbac

.PHONY: lint
lint: ## gofmt and go vet.
	@out="$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	cd hack/conformance && go vet ./...

.PHONY: verify
verify: generate manifests docs flux-operator-src ## Regenerate, tidy every module, and fail if the tree changed.
	for m in $(MODULES); do (cd $$m && go mod tidy); done
	@if [ -n "$$(git status --porcelain)" ]; then echo "verify: the tree is dirty after regeneration:"; git status --porcelain; git --no-pager diff --stat; exit 1; fi

.PHONY: docs
docs: ## Generate docs/reference.md (Helm values, flags, CRD fields).
	go run ./hack/docgen

##@ Build and test

.PHONY: build
build: ## Build the static fleetbridge binary into bin/.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(BIN)/fleetbridge ./cmd/fleetbridge

.PHONY: run
run: build ## Run fleetbridge against the cluster KUBECONFIG points at (set FLEETBRIDGE_PLUGIN_TOKEN for the plugin).
	$(BIN)/fleetbridge --metrics-bind-address=127.0.0.1:8080 --health-probe-bind-address=127.0.0.1:8081 --plugin-bind-address=127.0.0.1:8090

.PHONY: demo
demo: envtest-assets build ## Run fleetbridge against a local real API server with two workload clusters (Ctrl-C stops it).
	@# Built, not `go run`: go run exits 1 on Ctrl-C even when the demo cleaned up and exited 0.
	go build -o $(BIN)/demo ./hack/demo
	$(BIN)/demo

.PHONY: envtest-assets
envtest-assets: $(K8S_STAMP) ## Build kube-apiserver and etcd into bin/k8s (only when missing or versions change).

$(K8S_STAMP): hack/k8s/go.mod
	mkdir -p $(K8S_BIN)
	cd hack/k8s && go build -ldflags "-s -w \
		-X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
		-X k8s.io/component-base/version.gitMajor=1 \
		-X k8s.io/component-base/version.gitMinor=36 \
		-X k8s.io/component-base/version.gitTreeState=clean" \
		-o $(K8S_BIN)/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
	cd hack/k8s && go build -ldflags "-s -w" -o $(K8S_BIN)/etcd go.etcd.io/etcd/server/v3
	rm -f $(K8S_BIN)/.stamp-*
	touch $@

.PHONY: argocd-bin
argocd-bin: $(ARGOCD_STAMP) ## Build Argo CD's binary (ApplicationSet controller for end-to-end tests) into bin/.

$(ARGOCD_STAMP): hack/conformance/go.mod
	mkdir -p $(BIN)
	cd hack/conformance && go build -o $(ARGOCD_BIN) github.com/argoproj/argo-cd/v2/cmd
	rm -f $(BIN)/.stamp-argocd-*
	touch $@

.PHONY: argocd-v3-bin
argocd-v3-bin: $(ARGOCD_V3_STAMP) ## Build Argo CD v3's binary (end-to-end tests against Argo CD 3.x) into bin/.

$(ARGOCD_V3_STAMP): hack/argocd-v3/go.mod
	mkdir -p $(BIN)
	cd hack/argocd-v3 && go build -o $(ARGOCD_V3_BIN) github.com/argoproj/argo-cd/v3/cmd
	rm -f $(BIN)/.stamp-argocd-v3-*
	touch $@

.PHONY: flux-operator-src
flux-operator-src: $(FLUX_OPERATOR_SRC)/.stamp-$(FLUX_OPERATOR_VERSION) ## Copy Flux Operator's module into bin/ with a placeholder web UI (hack/flux-operator builds from it).

$(FLUX_OPERATOR_SRC)/.stamp-$(FLUX_OPERATOR_VERSION): hack/flux-operator/go.mod
	rm -rf $(FLUX_OPERATOR_SRC) && mkdir -p $(BIN)
	dir=$$(cd $${TMPDIR:-/tmp} && go mod download -json github.com/controlplaneio-fluxcd/flux-operator@$(FLUX_OPERATOR_VERSION) | \
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p') && test -n "$$dir" && cp -r "$$dir" $(FLUX_OPERATOR_SRC)
	chmod -R u+w $(FLUX_OPERATOR_SRC)
	mkdir -p $(FLUX_OPERATOR_SRC)/web/dist
	echo '<!doctype html><title>Flux Operator</title>' > $(FLUX_OPERATOR_SRC)/web/dist/index.html
	touch $@

.PHONY: flux-operator-bin
flux-operator-bin: $(FLUX_OPERATOR_STAMP) ## Build Flux Operator's controller (the Flux end-to-end test) into bin/.

$(FLUX_OPERATOR_STAMP): hack/flux-operator/go.mod $(FLUX_OPERATOR_SRC)/.stamp-$(FLUX_OPERATOR_VERSION)
	mkdir -p $(BIN)
	cd hack/flux-operator && go build -ldflags "-X main.VERSION=$(FLUX_OPERATOR_VERSION)" -o $(FLUX_OPERATOR_BIN) \
		github.com/controlplaneio-fluxcd/flux-operator/cmd/operator
	rm -f $(BIN)/.stamp-flux-operator-*
	touch $@

.PHONY: test
test: envtest-assets argocd-bin argocd-v3-bin flux-operator-bin chromium build ## Unit, envtest integration (-race), Argo CD conformance, and end-to-end tests against Argo CD 2.x and 3.x; the README's test command.
	rm -rf $(FIXTURES) && mkdir -p $(FIXTURES)
	FLEETBRIDGE_FIXTURES=$(FIXTURES) go test -race -count=1 -timeout 30m ./...
	capi=$$(go list -m -f '{{.Dir}}' sigs.k8s.io/cluster-api) && test -n "$$capi" && \
	cd hack/conformance && FLEETBRIDGE_FIXTURES=$(FIXTURES) FLEETBRIDGE_BINARY=$(BIN)/fleetbridge \
		FLEETBRIDGE_CAPI_CLUSTER_CRD=$$capi/core/config/crd/bases/cluster.x-k8s.io_clusters.yaml \
		go test -count=1 ./...
	ARGOCD_BINARY=$(ARGOCD_V3_BIN) ARGOCD_MODULE_ROOT=hack/argocd-v3 ARGOCD_MODULE=github.com/argoproj/argo-cd/v3 \
		go test -count=1 ./hack/e2e/

.PHONY: chromium
chromium: ## Install Debian's chromium, which the fleet page's browser test drives, when it is missing.
	@command -v chromium >/dev/null || { sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends chromium; }

.PHONY: bench
bench: envtest-assets argocd-bin argocd-v3-bin build ## Every benchmark of docs/performance.md in one run (about an hour); results in bin/bench/.
	hack/bench.sh

