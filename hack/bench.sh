#!/usr/bin/env bash
# make bench: every benchmark of docs/performance.md in one run, so the comparisons (fleetbridge's plugin
# against Argo CD's matrix generator and encoding/json; the registrar against a plain client) come from
# the same machine state. Raw results go to bin/bench/; a summary with the ratios is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bin/bench
mkdir -p "$out"

echo "== plugin answer, encoding/json floor, snapshot after a change, the fleet page"
go test -run '^$' -bench 'PluginAnswer|EncodingJSONFloor|SnapshotAfterChange|FleetPage' -benchmem -count=1 ./plugin/ | tee "$out/plugin.txt"

echo "== Argo CD v2.14.21 matrix(cluster x list) generator"
(cd hack/conformance && go test -run '^$' -bench ArgoCDMatrixGenerator -benchtime=1x -benchmem -count=1 .) | tee "$out/argocd.txt"

echo "== registrar: cold start of 1,000 Clusters (both modes) and the plain-client floor, steady state, peak RSS (1,000 and 10,000)"
FLEETBRIDGE_BINARY=bin/fleetbridge go test -run '^$' -bench 'ColdStart|SteadyState|PeakRSS' -benchtime=1x -count=1 -timeout 60m ./registrar/ | tee "$out/registrar.txt"

echo "== renewal spread (1h TTL, fleets of 1,000 minted together)"
go test -count=1 -v -run "TestRenewalWindowsPerHour$" ./registrar/ | grep -E "renewals over|^(ok|FAIL|---)" | tee "$out/renewal.txt"

# Both run Argo CD v3.5.7: v2.14's ApplicationSet controller lists every cluster Secret from the API server
# for each Application it generates (applicationset/utils.ValidateDestination), so at 1,000 clusters one
# reconcile of a 1,000-Application ApplicationSet takes minutes there.
argocd_v3=(ARGOCD_BINARY="$PWD/bin/argocd-v3" ARGOCD_MODULE_ROOT=hack/argocd-v3 ARGOCD_MODULE=github.com/argoproj/argo-cd/v3)
echo "== token rotation: ApplicationSet reconciles that renewals cause (Argo CD v3.5.7's real controller, 1,000 Clusters, 1h and 24h TTL), renewal windows against the clock-driven scheme"
env "${argocd_v3[@]}" FLEETBRIDGE_BINARY=bin/fleetbridge go test -run '^$' -bench 'Rotation' -benchtime=1x -count=1 -timeout 60m ./registrar/ | tee "$out/rotation.txt"

echo "== fleet change at scale: a new Cluster's Applications among 1,000 Clusters x 20 Workloads (Argo CD v3.5.7's real controller), with goTemplate and with fasttemplate"
env "${argocd_v3[@]}" FLEETBRIDGE_BINARY=bin/fleetbridge go test -run '^$' -bench 'FleetChange' -benchtime=1x -count=1 -timeout 90m ./registrar/ | tee "$out/fleet-change.txt"
env "${argocd_v3[@]}" FLEETBRIDGE_BINARY=bin/fleetbridge FLEETBRIDGE_BENCH_GOTEMPLATE=false go test -run '^$' -bench 'FleetChange' -benchtime=1x -count=1 -timeout 90m ./registrar/ | tee "$out/fleet-change-fasttemplate.txt"

echo "== fleet change to Application (the real ApplicationSet controller, plugin generator, default requeue)"
go test -count=1 -v -run TestPluginGeneratorFansOutWorkloads ./hack/e2e/ | grep -E "newly ready|^(ok|FAIL|---)" | tee "$out/e2e.txt"

echo
echo "== summary (ns/op from this run)"
awk '
  /^Benchmark/ { name=$1; sub(/-[0-9]+$/, "", name); for (i=3; i<NF; i+=2) m[name, $(i+1)]=$i; if (m[name, "ns/op"] != "") ns[name]=m[name, "ns/op"] }
  END {
    for (n in ns) if (n !~ /^Benchmark(ColdStart|SteadyState|PeakRSS|Rotation|FleetChange)/) printf "%-70s %14.3f ms\n", n, ns[n]/1e6
    kc="BenchmarkColdStart/kubeconfig"; sat="BenchmarkColdStart/serviceaccounttoken"
    seq="BenchmarkColdStart/floor-sequential"; w8="BenchmarkColdStart/floor-8-workers"
    if (m[kc, "s-to-all-secrets"] != "") {
      printf "registrar cold start, Kubeconfig mode: %.2f s to all Argo CD Secrets, %.2f writes/secret, %.2f management calls/cluster\n", m[kc, "s-to-all-secrets"], m[kc, "writes/secret"], m[kc, "mgmt-calls/cluster"]
      printf "registrar cold start vs plain-client floor: sequential %.2f s, 8 workers %.2f s; registrar/8-worker floor %.2fx\n", m[seq, "s-to-all-secrets"], m[w8, "s-to-all-secrets"], m[w8, "kubeconfig/floor"]
    }
    if (m[sat, "s-to-all-secrets"] != "")
      printf "registrar cold start, ServiceAccountToken mode: %.2f s, %.2f workload calls/cluster, %.2f management calls/cluster\n", m[sat, "s-to-all-secrets"], m[sat, "workload-calls/cluster"], m[sat, "mgmt-calls/cluster"]
    for (n in m) {
      split(n, part, SUBSEP)
      if (part[1] ~ /^BenchmarkRotation/ && part[2] == "reconciles/hour")
        printf "%s: %.1f rotation reconciles/hour with renewal windows (%.2f windows/hour, %.1f reconciles each, writes within %.1f s), %.0f with the clock-driven scheme\n", part[1], m[part[1], "reconciles/hour"], m[part[1], "windows/hour"], m[part[1], "reconciles/window"], m[part[1], "window-writes-s"], m[part[1], "clock-driven-reconciles/hour"]
      if (part[1] ~ /^BenchmarkFleetChange/ && part[2] == "s-to-applications")
        printf "%s at 1,000 x 20: Applications after %.1f s (Secret %.2f s, refresh %.2f s, plugin answer %.3f s, ApplicationSet reconcile %.1f s)\n", part[1], m[part[1], "s-to-applications"], m[part[1], "s-to-secret"], m[part[1], "s-to-refresh"], m[part[1], "plugin-answer-s"], m[part[1], "appset-reconcile-s"]
    }
    for (n in m) {
      split(n, part, SUBSEP)
      if (part[1] ~ /^BenchmarkSteadyState/ && part[2] == "mgmt-writes")
        printf "%s: %d management and %d workload writes over %d resyncs/cluster\n", part[1], m[part[1], "mgmt-writes"], m[part[1], "workload-writes"], m[part[1], "resyncs/cluster"]
      if (part[1] ~ /^BenchmarkPeakRSS/ && part[2] == "peak-RSS-MB")
        printf "%s: peak RSS %.1f MB, all Secrets after %.1f s\n", part[1], m[part[1], "peak-RSS-MB"], m[part[1], "s-to-all-secrets"]
    }
    split("1000 10000", sizes, " ")
    for (k=1; k<=2; k++) {
      s=sizes[k]; ours=ns["BenchmarkPluginAnswer/clusters=" s "/gzip=false"]
      argo=ns["BenchmarkArgoCDMatrixGenerator/clusters=" s]; floor=ns["BenchmarkEncodingJSONFloor/clusters=" s]
      if (ours > 0 && argo > 0) printf "clusters=%s: plugin answer is %.0fx faster than Argo CD'\''s matrix generator, %.1fx faster than encoding/json alone\n", s, argo/ours, floor/ours
    }
  }' "$out"/*.txt | sort
