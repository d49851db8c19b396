#!/usr/bin/env bash
# Builds a Prometheus image FROM scratch out of Debian's prometheus package
# (installed with apt-get when missing): prometheus, promtool, the shared
# libraries ldd lists and the web UI under /usr/share/prometheus (the
# classic UI: /classic/alerts), the way
# conformance/images/redis/build.sh builds Redis. Nothing is pulled.
# Usage: build.sh [TAG]; prints the tag.
set -euo pipefail
tag=${1:-wxpush/prometheus:local}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v prometheus >/dev/null 2>&1 || [ ! -d /usr/share/prometheus/web ]; then
	echo "prometheus image: installing Debian's prometheus package" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/bin" "$root/usr/share" "$root/etc/prometheus" "$root/prometheus" "$root/tmp"
for bin in prometheus promtool; do
	path=$(readlink -f "$(command -v "$bin")")
	cp "$path" "$root/usr/bin/$bin"
	# Every library ldd resolves, and the dynamic loader, at their paths.
	for lib in $(ldd "$path" | grep -oE '/[^ ]+'); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
done
# The web UI, its links into /usr/share/javascript followed (Debian ships
# the UI's libraries as separate packages), without moment-timezone's raw
# data (200 MB the UI does not load).
tar -C /usr/share -chf - --exclude='prometheus/web/static/moment-timezone/data' prometheus |
	tar -C "$root/usr/share" -xf -
for d in consoles console_libraries; do
	if [ -d "/etc/prometheus/$d" ]; then cp -r "/etc/prometheus/$d" "$root/etc/prometheus/$d"; fi
done
cp "$here/prometheus.yml" "$here/alerts.yml" "$root/etc/prometheus/"
chmod 1777 "$root/tmp" "$root/prometheus"
echo "nobody:x:65534:65534:nobody:/prometheus:/usr/sbin/nologin" > "$root/etc/passwd"
echo "nogroup:x:65534:" > "$root/etc/group"
cp "$here/Dockerfile" "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "$tag"
