#!/usr/bin/env bash
# Regenerates the certificate requests in this directory with openssl (see README.md).
# The private keys are thrown away: only the requests are kept.
set -euo pipefail
cd "$(dirname "$0")"
key=$(mktemp); trap 'rm -f "$key" "$key.cnf"' EXIT

req() { # name keyspec subject [san]
  local name=$1 keyspec=$2 subject=$3 san=${4:-}
  case $keyspec in
    ec256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null ;;
    ec384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$key" 2>/dev/null ;;
    ed25519) openssl genpkey -algorithm ED25519 -out "$key" 2>/dev/null ;;
    rsa*) openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${keyspec#rsa}" -out "$key" 2>/dev/null ;;
  esac
  local args=(-new -key "$key" -subj "$subject" -out "$name.csr")
  [[ $keyspec == ed25519 ]] || args+=(-sha256)
  [[ -n $san ]] && args+=(-addext "subjectAltName=$san")
  openssl req "${args[@]}"
}

req jane ec256 "/CN=jane/O=dev-team"
req jane-rsa2048 rsa2048 "/CN=jane/O=dev-team"
req jane-rsa1024 rsa1024 "/CN=jane/O=dev-team"
req jane-ed25519 ed25519 "/CN=jane/O=dev-team"
req jane-p384 ec384 "/CN=jane/O=dev-team/OU=platform"
req jane-masters ec256 "/CN=jane/O=system:masters"
req mallory-as-jane ec256 "/CN=jane/O=dev-team"
req worker-1-serving ec256 "/CN=system:node:worker-1/O=system:nodes" "DNS:worker-1,DNS:worker-1.cluster.internal,IP:10.0.0.11,IP:fd00::b"
req worker-1-spoofing ec256 "/CN=system:node:worker-1/O=system:nodes" "DNS:worker-1,DNS:api.example.com,IP:10.0.0.12"
req worker-1-client ec256 "/CN=system:node:worker-1/O=system:nodes"
req payments-spiffe ec256 "/CN=payments" "URI:spiffe://cluster.local/ns/payments/sa/api"
req payments-wrong-ns ec256 "/CN=payments" "URI:spiffe://cluster.local/ns/billing/sa/api"
req email-san ec256 "/CN=jane" "email:jane@example.com"

# A forged request: jane.csr with one byte of its signature changed.
python3 - <<'PY'
import base64
lines = open("jane.csr").read().split("\n")
body = base64.b64decode("".join(l for l in lines if l and not l.startswith("-----")))
der = bytearray(body); der[-5] ^= 0x01
b64 = base64.b64encode(bytes(der)).decode()
pem = "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(b64[i:i+64] for i in range(0, len(b64), 64)) + "\n-----END CERTIFICATE REQUEST-----\n"
open("jane-forged.csr", "w").write(pem)
PY
