#!/usr/bin/env bash
# Regenerates the certificate requests of the cookbook recipes (docs/cookbook.md) with
# openssl, as make.sh does for the other examples, and wraps each in a
# CertificateSigningRequest manifest as `kubectl get csr NAME -o yaml` shows it.
# Requests whose decision depends on when the CSR was created carry a fixed
# metadata.creationTimestamp and go to ../tests/csrs/, so that only `csrgate test` reads them
# (a CSR created in a cluster gets the server's clock instead).
# The private keys are thrown away: only the requests are kept.
set -euo pipefail
cd "$(dirname "$0")"
key=$(mktemp); trap 'rm -f "$key"' EXIT

# dir name subject san signer usages expiration username groups(comma) [creationTimestamp]
make() {
  local dir=$1 name=$2 subject=$3 san=$4 signer=$5 usages=$6 expiration=$7 user=$8 groups=$9 created=${10:-}
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null
  local args=(-new -sha256 -key "$key" -subj "$subject" -out "$dir/$name.csr")
  [[ -n $san ]] && args+=(-addext "subjectAltName=$san")
  openssl req "${args[@]}"
  {
    echo "apiVersion: certificates.k8s.io/v1"
    echo "kind: CertificateSigningRequest"
    echo "metadata:"
    echo "  name: $name"
    [[ -n $created ]] && echo "  creationTimestamp: \"$created\""
    echo "spec:"
    echo "  request: $(base64 -w0 < "$dir/$name.csr")"
    echo "  signerName: $signer"
    [[ -n $expiration ]] && echo "  expirationSeconds: $expiration"
    echo "  usages:"
    IFS=, read -ra us <<< "$usages"; for u in "${us[@]}"; do echo "  - $u"; done
    echo "  username: $user"
    echo "  groups:"
    IFS=, read -ra gs <<< "$groups"; for g in "${gs[@]}"; do echo "  - $g"; done
    echo "  - system:authenticated"
  } > "$dir/$name.yaml"
}

mtls=payments.example.com/mtls
access=access.example.com/kube-admin
sa=system:serviceaccount:payments:gateway
sagroups=system:serviceaccounts,system:serviceaccounts:payments
both="digital signature,server auth,client auth"

# A custom signer run by the payments team (recipe "custom signers").
make . payments-gateway "/CN=gateway/O=payments" "DNS:gateway.payments.svc.cluster.local,DNS:gateway.payments.example.com,IP:10.20.1.5" $mtls "$both" 2592000 $sa $sagroups
make . payments-gateway-outside "/CN=gateway/O=payments" "DNS:gateway.billing.svc.cluster.local,IP:10.30.0.7" $mtls "$both" 2592000 $sa $sagroups

# Short-lived administrator access from a dedicated signer (recipes "time-bounded
# certificates" and "break-glass audit").
make . oncall-sam "/CN=sam/O=sre" "" $access "client auth" 28800 sam sre
make . oncall-sam-week "/CN=sam/O=sre" "" $access "client auth" 604800 sam sre
make . breakglass-sam "/CN=sam/O=system:masters" "" $access "client auth" 3600 sam sre,break-glass
make . breakglass-sam-day "/CN=sam/O=system:masters" "" $access "client auth" 86400 sam sre,break-glass

# Contractors only during office hours: the decision depends on the creation time.
make ../tests/csrs contractor-tuesday-morning "/CN=chris/O=contractors" "" $access "client auth" 14400 chris contractors 2026-03-03T09:30:00Z
make ../tests/csrs contractor-saturday "/CN=chris/O=contractors" "" $access "client auth" 14400 chris contractors 2026-03-07T10:00:00Z
make ../tests/csrs contractor-tuesday-night "/CN=chris/O=contractors" "" $access "client auth" 14400 chris contractors 2026-03-03T22:15:00Z

# Kubelet bootstrap client certificates only for names that are not yet a Node (recipe
# "bootstrap for new nodes only"): a bootstrap token asks for worker-7, which has no Node.
make ../tests/csrs worker-7-bootstrap "/CN=system:node:worker-7/O=system:nodes" "" kubernetes.io/kube-apiserver-client-kubelet "digital signature,client auth" "" system:bootstrap:abcdef system:bootstrappers
