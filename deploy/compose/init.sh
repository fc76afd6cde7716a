#!/bin/sh
# One-shot set-up for compose.yaml, as the certificate admin: migrations, the CA (its key
# stays in the `ca-admin` volume, which no node mounts), and for each node its server and
# relay certificates plus ca.pem, copied into that node's own volume. Idempotent: what
# exists is kept.
. /compose/env.sh
traffic-center db upgrade
[ -f "$TC_HOME/ca/ca.pem" ] || traffic-center ca init
for node in tc-1 tc-2; do
    out="$TC_HOME/issued/$node"
    mkdir -p "$out"
    # The names schools and proxies use: the node's own, the shared node name (for
    # TLS-terminating proxies), and localhost for trying it out through HAProxy.
    [ -f "$out/server.pem" ] || traffic-center ca issue-server --host "$node" \
        --host traffic-center-node --host localhost --host 127.0.0.1 --out "$out/server"
    [ -f "$out/relay.pem" ] || traffic-center ca issue-relay --out "$out/relay"
    cp "$TC_HOME/ca/ca.pem" "$out/server.pem" "$out/server.key" "$out/relay.pem" \
        "$out/relay.key" "/nodes/$node/"
    chown -R 10001:10001 "/nodes/$node"
    chmod 600 "/nodes/$node/server.key" "/nodes/$node/relay.key"
done
echo "init: done; CA key in the ca-admin volume only"
