#!/usr/bin/env bash
# Regenerates the requests that exercise each signature algorithm and key kind (issue #11), with
# openssl 3. The private keys are thrown away: only the requests are kept.
set -euo pipefail
cd "$(dirname "$0")"
key=$(mktemp); cnf=$(mktemp); trap 'rm -f "$key" "$cnf"' EXIT

gen() { # keyspec
  case $1 in
    ec*) openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:P-${1#ec}" -out "$key" 2>/dev/null ;;
    rsa*) openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${1#rsa}" -out "$key" 2>/dev/null ;;
  esac
}

# name keyspec digest [extra openssl req args...]
req() {
  local name=$1 keyspec=$2 digest=$3; shift 3
  gen "$keyspec"
  openssl req -new -key "$key" -subj "/CN=jane/O=dev-team" "-$digest" -out "alg-$name.csr" "$@"
}

req p224-sha256 ec224 sha256
req p521-sha256 ec521 sha256
req p521-sha512 ec521 sha512
req p256-sha384 ec256 sha384
req p384-sha512 ec384 sha512
# openssl makes a 3070-bit modulus when asked for 3071 bits, so the 3071-bit key is built from
# two openssl-made primes (1536 and 1535 bits) with Python's cryptography package.
python3 - <<'PY'
import subprocess
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography import x509
from cryptography.x509.oid import NameOID
def prime(bits):
    return int(subprocess.check_output(["openssl", "prime", "-generate", "-bits", str(bits)]))
e = 65537
while True:
    p, q = prime(1536), prime(1535)
    n = p * q
    if n.bit_length() == 3071 and (p - 1) % e and (q - 1) % e:
        break
d = pow(e, -1, (p - 1) * (q - 1))
key = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                            rsa.RSAPublicNumbers(e, n)).private_key()
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jane"),
                  x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dev-team")])
csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
open("alg-rsa3071-sha256.csr", "wb").write(csr.public_bytes(serialization.Encoding.PEM))
PY
req rsa1024-sha512 rsa1024 sha512
req rsa2048-sha384 rsa2048 sha384
for bits in 256 384 512; do
  req "rsa2048-pss-sha$bits" rsa2048 "sha$bits" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest
done
# PSS with a salt length other than the hash length: Go does not verify it.
req rsa2048-pss-sha256-salt20 rsa2048 sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:20
req rsa2048-sha1 rsa2048 sha1
req p256-sha1 ec256 sha1
req rsa2048-sha224 rsa2048 sha224
req rsa512-sha256 rsa512 sha256

# A challengePassword written as a BMPString (RFC 2985 §5.4.1 allows any DirectoryString).
gen ec256
cat > "$cnf" <<'CNF'
[req]
distinguished_name = dn
attributes = attrs
prompt = no
string_mask = default
utf8 = yes
[dn]
CN = jane
O = dev-team
[attrs]
challengePassword = pässwörd€
CNF
openssl req -new -key "$key" -config "$cnf" -sha256 -out alg-challenge-bmp.csr
