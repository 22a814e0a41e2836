#!/bin/sh
# Demo TLS material for deploy/compose.yaml and compose.cluster.yml: a CA, and a certificate for the
# broker (rabbitmq, the cluster's rabbitmq-1..3, localhost). Idempotent: does nothing when the files
# exist. In production use your own PKI.
set -eu
out="${1:-/tls}"
[ -f "$out/server.pem" ] && { echo "TLS material present in $out"; exit 0; }
command -v openssl >/dev/null || apk add --no-cache openssl >/dev/null
mkdir -p "$out" && cd "$out"
openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=sitesync demo CA" -keyout ca-key.pem -out ca.pem
openssl req -newkey rsa:2048 -nodes -subj "/CN=rabbitmq" -keyout server-key.pem -out server.csr
printf 'subjectAltName=DNS:rabbitmq,DNS:rabbitmq-1,DNS:rabbitmq-2,DNS:rabbitmq-3,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 825 -extfile server.ext -out server.pem
rm -f server.csr server.ext ca.srl
# The broker runs as its own user: let it read its key (demo only).
chmod 644 ca.pem server.pem server-key.pem
chmod 600 ca-key.pem
echo "TLS material written to $out"
