#!/usr/bin/env bash
# Seeds the fuzz corpora with every request in ../testdata: DER for parse_der, PEM for
# parse_request.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/parse_der corpus/parse_request
for f in ../testdata/*.csr; do
  name=$(basename "$f" .csr)
  cp "$f" "corpus/parse_request/$name"
  openssl req -in "$f" -outform DER -out "corpus/parse_der/$name"
done
