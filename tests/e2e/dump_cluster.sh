#!/usr/bin/env bash
# Write the state of a GreenLane release and every pod's logs into a folder (CI
# uploads it when the e2e job fails), and print the essentials to the job log.
# Usage: tests/e2e/dump_cluster.sh [NAMESPACE] [OUT_DIR]
set -uo pipefail

NS=${1:-greenlane}
OUT=${2:-e2e-logs}
KUBECTL=${KUBECTL:-kubectl}
mkdir -p "$OUT"

"$KUBECTL" get nodes -o wide >"$OUT/nodes.txt" 2>&1
"$KUBECTL" -n "$NS" get all,jobs,pvc,secrets,configmaps,networkpolicies,poddisruptionbudgets -o wide >"$OUT/objects.txt" 2>&1
"$KUBECTL" -n "$NS" get events --sort-by=.lastTimestamp >"$OUT/events.txt" 2>&1
"$KUBECTL" -n "$NS" describe pods >"$OUT/pods-described.txt" 2>&1
"$KUBECTL" get fleetsimulations -A -o yaml >"$OUT/fleetsimulations.yaml" 2>&1
helm -n "$NS" status greenlane >"$OUT/helm-status.txt" 2>&1
for pod in $("$KUBECTL" -n "$NS" get pods -o name 2>/dev/null); do
    name=${pod#pod/}
    "$KUBECTL" -n "$NS" logs "$pod" --all-containers --prefix --timestamps >"$OUT/$name.log" 2>&1
    "$KUBECTL" -n "$NS" logs "$pod" --all-containers --prefix --previous >"$OUT/$name.previous.log" 2>/dev/null \
        || rm -f "$OUT/$name.previous.log"
done

echo "::group::pods and events in $NS"
cat "$OUT/objects.txt" "$OUT/events.txt"
echo "::endgroup::"
for log in "$OUT"/*.log; do
    [[ -e $log ]] || continue
    echo "::group::$(basename "$log")"
    tail -n 200 "$log"
    echo "::endgroup::"
done
exit 0
