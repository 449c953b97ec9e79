#!/usr/bin/env bash
# make bench: every benchmark of docs/performance.md in one run, so the comparisons (fleetbridge's plugin
# against Argo CD's matrix generator and encoding/json; the registrar against a plain client) come from
# the same machine state. Raw results go to bin/bench/; a summary with the ratios is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bin/bench
mkdir -p "$out"

echo "== plugin answer, encoding/json floor, snapshot after a change"
go test -run '^$' -bench 'PluginAnswer|EncodingJSONFloor|SnapshotAfterChange' -benchmem -count=1 ./plugin/ | tee "$out/plugin.txt"

echo "== Argo CD v2.14.21 matrix(cluster x list) generator"
(cd hack/conformance && go test -run '^$' -bench ArgoCDMatrixGenerator -benchtime=1x -benchmem -count=1 .) | tee "$out/argocd.txt"

echo "== fleet change to Application (the real ApplicationSet controller, plugin generator, default requeue)"
go test -count=1 -v -run TestPluginGeneratorFansOutWorkloads ./hack/e2e/ | grep -E "newly ready|^(ok|FAIL|---)" | tee "$out/e2e.txt"

echo
echo "== summary (ns/op from this run)"
awk '
  /^Benchmark/ { name=$1; sub(/-[0-9]+$/, "", name); for (i=2; i<=NF; i++) if ($i=="ns/op") ns[name]=$(i-1) }
  END {
    for (n in ns) printf "%-70s %14.3f ms\n", n, ns[n]/1e6
    split("1000 10000", sizes, " ")
    for (k=1; k<=2; k++) {
      s=sizes[k]; ours=ns["BenchmarkPluginAnswer/clusters=" s "/gzip=false"]
      argo=ns["BenchmarkArgoCDMatrixGenerator/clusters=" s]; floor=ns["BenchmarkEncodingJSONFloor/clusters=" s]
      if (ours > 0 && argo > 0) printf "clusters=%s: plugin answer is %.0fx faster than Argo CD'\''s matrix generator, %.1fx faster than encoding/json alone\n", s, argo/ours, floor/ours
    }
  }' "$out"/*.txt | sort
