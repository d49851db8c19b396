#!/usr/bin/env bash
# Builds a Redis image FROM scratch out of Debian's redis-server (installed
# with apt-get when missing) and the shared libraries ldd lists: for CI on
# machines that cannot pull redis:7-alpine. Usage: build.sh [TAG]
set -euo pipefail
tag=${1:-wxpush/redis:local}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v redis-server >/dev/null 2>&1; then
	echo "redis image: installing redis-server"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/bin" "$root/data" "$root/tmp" "$root/etc"
for bin in redis-server redis-cli; do
	path=$(readlink -f "$(command -v "$bin")")
	cp "$path" "$root/usr/bin/$bin"
	# Every library ldd resolves, and the dynamic loader, at their paths.
	for lib in $(ldd "$path" | grep -oE '/[^ ]+'); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
done
chmod 1777 "$root/tmp" "$root/data"
echo "redis:x:999:999::/data:/usr/sbin/nologin" > "$root/etc/passwd"
cp "$here/Dockerfile" "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "$tag"
