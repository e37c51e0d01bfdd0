#!/bin/sh
# nginx asks a DNS server for the replicas' addresses while it runs (a replica
# whose container restarts comes back at a new address), but it reads no
# /etc/resolv.conf: this names the container's own server to it (podman's or
# docker's, whichever the network has), then runs the command (nginx).
set -eu
resolv_conf=${RESOLV_CONF:-/etc/resolv.conf}
out=${NGINX_RESOLVER_CONF:-/etc/nginx/resolver.conf}
nameserver=$(awk '$1 == "nameserver" { print $2; exit }' "$resolv_conf")
if [ -z "$nameserver" ]; then
  echo "error: $resolv_conf names no nameserver: nginx could not find the replicas" >&2
  exit 1
fi
case $nameserver in
  *:*) nameserver="[$nameserver]" ;;  # IPv6
esac
echo "resolver $nameserver valid=1s ipv6=off;" > "$out"
exec "$@"
