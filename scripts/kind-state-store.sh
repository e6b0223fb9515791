#!/usr/bin/env bash
# The plain Valkey that auth's replicas share on kind (issue 18): its Secret with a random password (made
# once; an existing one is kept, so a rerun does not lock out running pods), then k8s/valkey.yaml, then wait.
#
#   scripts/kind-state-store.sh NAMESPACE
#
# The password never appears on a command line or in the output: it is written to 0600 files in a temp
# dir that kubectl reads and that is removed at once.
set -euo pipefail
cd "$(dirname "$0")/.."
namespace="${1:?usage: $0 NAMESPACE}"
secret=modelberth-valkey

kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"
if ! kubectl -n "$namespace" get secret "$secret" >/dev/null 2>&1; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (
    umask 077
    password="$(openssl rand -hex 24)"
    printf '%s' "$password" > "$work/password"
    printf 'requirepass %s\n' "$password" > "$work/valkey.conf"
  )
  kubectl -n "$namespace" create secret generic "$secret" \
    --from-file=password="$work/password" --from-file=valkey.conf="$work/valkey.conf"
fi
kubectl -n "$namespace" apply -f k8s/valkey.yaml
kubectl -n "$namespace" rollout status deployment/modelberth-valkey --timeout=5m
