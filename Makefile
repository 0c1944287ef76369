# dualmesh: build, test and try it out. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# ---------------------------------------------------------------------------
# Tools: kube-apiserver, kubectl, etcd, helm, istioctl and pilot-discovery built from source
# through the Go module proxy (no internet, no prebuilt downloads here). Their
# versions are pinned in tools/*/go.mod; the cache folder is named after them,
# so a version bump builds into a new folder and a warm cache is a no-op.
# ---------------------------------------------------------------------------
# The version a go.mod requires of module $(1), in either require form.
gomod-version = $(shell awk -v m=$(1) '$$1==m && $$2!="=>" {print $$2; exit} $$1=="require" && $$2==m {print $$3; exit}' $(2))
K8S_VERSION   := $(call gomod-version,k8s.io/kubernetes,tools/kubernetes/go.mod)
ETCD_VERSION  := $(call gomod-version,go.etcd.io/etcd/server/v3,tools/etcd/go.mod)
HELM_VERSION  := $(call gomod-version,helm.sh/helm/v3,tools/helm/go.mod)
ISTIO_VERSION := $(call gomod-version,istio.io/istio,tools/istioctl/go.mod)
ISTIO_RELEASE := $(shell awk '/^\/\/ istio-version:/ {print $$3}' tools/istioctl/go.mod)
KWOK_VERSION  := $(call gomod-version,sigs.k8s.io/kwok,tools/kwok/go.mod)
K8S_MINOR     := $(word 2,$(subst ., ,$(K8S_VERSION)))

TOOLS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/dualmesh/tools
TOOLS_BIN   ?= $(TOOLS_CACHE)/k8s-$(K8S_VERSION)_etcd-$(ETCD_VERSION)_helm-$(HELM_VERSION)_istio-$(ISTIO_VERSION)/bin
# kwok's version is in its file names, not in the folder's: renaming the
# folder would rebuild every tool, while kwok-<version> builds only kwok anew.
KWOK        := kwok-$(KWOK_VERSION)
TOOLS       := kube-apiserver kube-controller-manager kube-scheduler kubectl etcd helm istioctl pilot-discovery \
	$(KWOK) kwok $(KWOK)-stages/.copied

# The Go module proxy is the only network here: no "direct" fallback, the
# checksum database through the proxy, the installed Go and nothing newer,
# static binaries.
GO_ENV := GOTOOLCHAIN=local GOPROXY=https://proxy.golang.org GOSUMDB=sum.golang.org \
	GOFLAGS="-mod=readonly -buildvcs=false -trimpath" CGO_ENABLED=0

K8S_LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$(K8S_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/client-go/pkg/version.gitMajor=1 \
	-X k8s.io/client-go/pkg/version.gitMinor=$(K8S_MINOR)
# helm reports this as the cluster version for `helm template` (else 1.20).
HELM_LDFLAGS := -s -w \
	-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(K8S_MINOR)
KWOK_LDFLAGS := -s -w \
	-X sigs.k8s.io/kwok/pkg/consts.Version=$(KWOK_VERSION) \
	-X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$(K8S_VERSION)
ISTIO_LDFLAGS := -s -w \
	-X istio.io/istio/pkg/version.buildVersion=$(ISTIO_RELEASE) \
	-X istio.io/istio/pkg/version.buildGitRevision=$(ISTIO_VERSION) \
	-X istio.io/istio/pkg/version.buildStatus=Clean \
	-X istio.io/istio/pkg/version.buildTag=$(ISTIO_RELEASE)

export DUALMESH_TOOLS_BIN := $(TOOLS_BIN)

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: tools
tools: $(addprefix $(TOOLS_BIN)/,$(TOOLS)) ## Build the Kubernetes tools into the cache (no-op when warm).
	@echo "tools: ready in $(TOOLS_BIN)"

.PHONY: tools-path
tools-path: ## Print the folder holding the built tools.
	@echo $(TOOLS_BIN)

# Each binary is built to a temporary name and moved into place, so an
# interrupted build never leaves a half-written tool that looks warm.
define build-tool
	@mkdir -p $(TOOLS_BIN)
	@echo "tools: building $(notdir $@) ($(2)) ..."
	@start=$$(date +%s); cd tools/$(1) && $(GO_ENV) go build -ldflags "$(4)" $(5) -o $@.partial $(3); \
	  mv $@.partial $@; echo "tools: built $(notdir $@) in $$(( $$(date +%s) - start ))s"
endef

$(TOOLS_BIN)/kube-apiserver:
	$(call build-tool,kubernetes,k8s.io/kubernetes $(K8S_VERSION),k8s.io/kubernetes/cmd/kube-apiserver,$(K8S_LDFLAGS),)
$(TOOLS_BIN)/kubectl:
	$(call build-tool,kubernetes,k8s.io/kubernetes $(K8S_VERSION),k8s.io/kubernetes/cmd/kubectl,$(K8S_LDFLAGS),)
$(TOOLS_BIN)/kube-controller-manager:
	$(call build-tool,kubernetes,k8s.io/kubernetes $(K8S_VERSION),k8s.io/kubernetes/cmd/kube-controller-manager,$(K8S_LDFLAGS),)
$(TOOLS_BIN)/kube-scheduler:
	$(call build-tool,kubernetes,k8s.io/kubernetes $(K8S_VERSION),k8s.io/kubernetes/cmd/kube-scheduler,$(K8S_LDFLAGS),)
$(TOOLS_BIN)/etcd:
	$(call build-tool,etcd,etcd $(ETCD_VERSION),.,-s -w,)
$(TOOLS_BIN)/helm:
	$(call build-tool,helm,helm $(HELM_VERSION),helm.sh/helm/v3/cmd/helm,$(HELM_LDFLAGS),)
$(TOOLS_BIN)/istioctl:
	$(call build-tool,istioctl,istio $(ISTIO_RELEASE) $(ISTIO_VERSION),istio.io/istio/istioctl/cmd/istioctl,$(ISTIO_LDFLAGS),-tags vtprotobuf$(,)disable_pgv)
# istiod, from the same module and tags as istioctl: tests run it as a plain
# process against a test plane (tests/support/src/istiod.rs).
$(TOOLS_BIN)/pilot-discovery:
	$(call build-tool,istioctl,istio $(ISTIO_RELEASE) $(ISTIO_VERSION),istio.io/istio/pilot/cmd/pilot-discovery,$(ISTIO_LDFLAGS),-tags vtprotobuf$(,)disable_pgv)
, := ,

# kwok ships no stages of its own (without them it exits "no stages found"):
# its "fast" set (node initialize, node heartbeat with lease, pod ready, pod
# complete, pod delete) is copied from the kwok module's kustomize/stage/.
KWOK_STAGES := node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
	pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml
$(TOOLS_BIN)/$(KWOK):
	$(call build-tool,kwok,kwok $(KWOK_VERSION),sigs.k8s.io/kwok/cmd/kwok,$(KWOK_LDFLAGS),)
$(TOOLS_BIN)/kwok: $(TOOLS_BIN)/$(KWOK)
	@ln -sfn $(KWOK) $@
$(TOOLS_BIN)/$(KWOK)-stages/.copied:
	@mkdir -p $(TOOLS_BIN) && cd tools/kwok && $(GO_ENV) go mod download sigs.k8s.io/kwok
	@dir=$$(cd tools/kwok && $(GO_ENV) go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) && \
	  rm -rf $(@D).partial && mkdir -p $(@D).partial && \
	  for f in $(KWOK_STAGES); do cp "$$dir/kustomize/stage/$$f" $(@D).partial/; done && \
	  chmod 644 $(@D).partial/*.yaml && touch $(@D).partial/.copied && \
	  rm -rf $(@D) && mv $(@D).partial $(@D) && ln -sfn $(KWOK)-stages $(TOOLS_BIN)/kwok-stages && \
	  echo "tools: copied kwok $(KWOK_VERSION) stages ($(words $(KWOK_STAGES)) files)"

# ---------------------------------------------------------------------------
# Build, test, lint
# ---------------------------------------------------------------------------
.PHONY: build
build: ## Build dualmesh (debug).
	cargo build --workspace

.PHONY: generate
generate: $(TOOLS_BIN)/helm ## Regenerate crds/, the chart's CRDs and deploy/ (tests fail when they drift).
	cargo run -q -- crd --dir crds
	rm -f charts/dualmesh/crds/*.yaml
	cp crds/*.yaml charts/dualmesh/crds/
	charts/render-manifests.sh $(TOOLS_BIN)/helm deploy

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings as errors.
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

.PHONY: test
test: tools lint ## Everything CI runs: tools, lint, unit and integration tests on real control planes.
	cargo test --workspace --no-fail-fast

# ---------------------------------------------------------------------------
# Proof: benchmarks and fault tests on real control planes (outside `make
# test`: they take tens of minutes). Method and figures: docs/benchmarks.md.
# ---------------------------------------------------------------------------
.PHONY: bench
bench: tools ## Latency, scale and quiet benchmarks against real control planes (release build; prints figures).
	cargo bench --bench latency
	cargo bench --bench scale

.PHONY: chaos
# One test binary per suite (tests/chaos_*.rs), run one after the other.
CHAOS_TESTS := $(patsubst tests/%.rs,--test %,$(sort $(wildcard tests/chaos_*.rs)))

chaos: tools ## Fault tests: apiserver killed, member down, operator killed mid-sync, leader killed and frozen.
	cargo test $(CHAOS_TESTS) -- --include-ignored --test-threads=1 --nocapture

# ---------------------------------------------------------------------------
# Try it without a cluster: two real control planes on loopback.
# ---------------------------------------------------------------------------
DEV_DIR := .dev

.PHONY: dev-up
dev-up: tools ## Start clusters alpha and beta (control plane, scheduler, controller-manager, kwok, 2 fake Nodes each) in the background (.dev/*.kubeconfig).
	cargo build -p testplane --bin testplane
	target/debug/testplane up --dir $(DEV_DIR) --cluster --nodes 2 alpha beta

.PHONY: dev-down
dev-down: ## Stop dualmesh and the control planes started by dev-up / demo.
	@if [ -f $(DEV_DIR)/dualmesh.pid ]; then kill $$(cat $(DEV_DIR)/dualmesh.pid) 2>/dev/null || true; rm -f $(DEV_DIR)/dualmesh.pid; fi
	@if [ -x target/debug/testplane ]; then target/debug/testplane down --dir $(DEV_DIR); \
	  else for f in $(DEV_DIR)/*.pids; do [ -e "$$f" ] && kill $$(cat "$$f") || true; rm -f "$$f"; done; fi

.PHONY: demo
demo: tools ## The whole flow on alpha + beta: CRDs, policy, MeshClusters, gateways, trust secrets, metrics.
	cargo build -p testplane --bin testplane
	cargo build --bin dualmesh
	DEMO_DIR=$(DEV_DIR) tools/demo.sh
