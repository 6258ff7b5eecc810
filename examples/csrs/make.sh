#!/usr/bin/env bash
# Regenerates the example certificate requests with openssl, the way a person would
# (`openssl genpkey`, `openssl req`), and wraps each in a CertificateSigningRequest manifest
# as `kubectl get csr NAME -o yaml` would show it after creation (spec.username and
# spec.groups are what the API server fills in for the requestor).
# The private keys are thrown away: only the requests are kept.
set -euo pipefail
cd "$(dirname "$0")"
key=$(mktemp); trap 'rm -f "$key"' EXIT

# name keyspec subject san signer usages expiration username groups(comma)
make() {
  local name=$1 keyspec=$2 subject=$3 san=$4 signer=$5 usages=$6 expiration=$7 user=$8 groups=$9
  case $keyspec in
    ec256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null ;;
    rsa*) openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${keyspec#rsa}" -out "$key" 2>/dev/null ;;
  esac
  local args=(-new -sha256 -key "$key" -subj "$subject" -out "$name.csr")
  [[ -n $san ]] && args+=(-addext "subjectAltName=$san")
  openssl req "${args[@]}"
  {
    echo "apiVersion: certificates.k8s.io/v1"
    echo "kind: CertificateSigningRequest"
    echo "metadata:"
    echo "  name: $name"
    echo "spec:"
    echo "  request: $(base64 -w0 < "$name.csr")"
    echo "  signerName: $signer"
    [[ -n $expiration ]] && echo "  expirationSeconds: $expiration"
    echo "  usages:"
    IFS=, read -ra us <<< "$usages"; for u in "${us[@]}"; do echo "  - $u"; done
    echo "  username: $user"
    echo "  groups:"
    IFS=, read -ra gs <<< "$groups"; for g in "${gs[@]}"; do echo "  - $g"; done
    echo "  - system:authenticated"
  } > "$name.yaml"
}

client=kubernetes.io/kube-apiserver-client
serving=kubernetes.io/kubelet-serving
kubelet=kubernetes.io/kube-apiserver-client-kubelet
workload=csrgate.dev/workload-client

make jane ec256 "/CN=jane/O=dev-team" "" $client "client auth" 86400 jane platform-admins
make jane-rsa2048 rsa2048 "/CN=jane/O=dev-team" "" $client "client auth" 86400 jane platform-admins
make jane-forever ec256 "/CN=jane/O=dev-team" "" $client "client auth" "" jane platform-admins
make jane-as-admin ec256 "/CN=admin/O=dev-team" "" $client "client auth" 86400 jane platform-admins
make jane-masters ec256 "/CN=jane/O=system:masters" "" $client "client auth" 86400 jane platform-admins
make mallory ec256 "/CN=mallory/O=dev-team" "" $client "client auth" 86400 mallory developers
make worker-1-serving ec256 "/CN=system:node:worker-1/O=system:nodes" "DNS:worker-1,DNS:worker-1.cluster.internal,IP:10.0.0.11" $serving "digital signature,server auth" "" system:node:worker-1 system:nodes
make worker-1-spoofing ec256 "/CN=system:node:worker-1/O=system:nodes" "DNS:worker-1,DNS:kubernetes.default.svc,IP:10.0.0.12" $serving "digital signature,server auth" "" system:node:worker-1 system:nodes
make worker-2-as-worker-1 ec256 "/CN=system:node:worker-1/O=system:nodes" "DNS:worker-1,IP:10.0.0.11" $serving "digital signature,server auth" "" system:node:worker-2 system:nodes
make worker-1-client ec256 "/CN=system:node:worker-1/O=system:nodes" "" $kubelet "digital signature,client auth" "" system:node:worker-1 system:nodes
make worker-1-client-extra-org ec256 "/CN=system:node:worker-1/O=system:nodes/O=system:masters" "" $kubelet "digital signature,client auth" "" system:node:worker-1 system:nodes
make payments-api ec256 "/CN=api" "URI:spiffe://cluster.local/ns/payments/sa/api" $workload "digital signature,client auth" 3600 system:serviceaccount:payments:api system:serviceaccounts,system:serviceaccounts:payments
make payments-as-billing ec256 "/CN=api" "URI:spiffe://cluster.local/ns/billing/sa/api" $workload "digital signature,client auth" 3600 system:serviceaccount:payments:api system:serviceaccounts,system:serviceaccounts:payments
make payments-with-dns ec256 "/CN=api" "URI:spiffe://cluster.local/ns/payments/sa/api,DNS:billing.example.com" $workload "digital signature,client auth" 3600 system:serviceaccount:payments:api system:serviceaccounts,system:serviceaccounts:payments

# A forged request: jane.csr with one byte of its signature changed.
python3 - <<'PY'
import base64, re
pem = open("jane.csr").read()
der = bytearray(base64.b64decode("".join(l for l in pem.splitlines() if not l.startswith("-----"))))
der[-5] ^= 0x01
b64 = base64.b64encode(bytes(der)).decode()
out = "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(b64[i:i+64] for i in range(0, len(b64), 64)) + "\n-----END CERTIFICATE REQUEST-----\n"
open("jane-forged.csr", "w").write(out)
manifest = open("jane.yaml").read().replace("name: jane\n", "name: jane-forged\n", 1)
manifest = re.sub(r"request: \S+", "request: " + base64.b64encode(out.encode()).decode(), manifest)
open("jane-forged.yaml", "w").write(manifest)
PY
