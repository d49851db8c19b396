#!/usr/bin/env bash
# Fills the build contexts under deploy/ and builds the images FROM scratch,
# with no pull:
#   wxpushd     static binary (CGO_ENABLED=0, -tags timetzdata) + CA bundle
#   mockwx      static binary + CA bundle
#   redis       Debian's redis-server and redis-cli + the libraries ldd lists
#   prometheus  Debian's prometheus and promtool + libraries + the web UI
# Each goes to deploy/NAME/rootfs/ (git ignores it), the context that
# docker-compose.yml's build: sections use, so that after this a plain
# `docker compose up -d` can rebuild any image it misses without a registry.
# Debian packages are installed with apt-get when missing.
#
# Usage: deploy/build.sh [--contexts-only] [NAME...]   (default: all four)
# Prints one tag per image built. Tags: WXPUSH_IMAGE, MOCKWX_IMAGE,
# WXPUSH_REDIS_IMAGE, WXPUSH_PROMETHEUS_IMAGE, else wxpush/NAME:local.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=1
if [ "${1:-}" = "--contexts-only" ]; then build=0; shift; fi
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(wxpushd mockwx redis prometheus)

# need CMD PACKAGE: installs PACKAGE from Debian when CMD is missing.
need() {
	command -v "$1" >/dev/null 2>&1 && return
	echo "build.sh: installing Debian's $2 package" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

# copy_elf ROOTFS CMD: the binary at /usr/bin/CMD, every library ldd
# resolves and the dynamic loader, at their own paths.
copy_elf() {
	local path lib
	path=$(readlink -f "$(command -v "$2")")
	cp "$path" "$1/usr/bin/$2"
	for lib in $(ldd "$path" | grep -oE '/[^ ]+'); do
		mkdir -p "$1$(dirname "$lib")"
		cp -L "$lib" "$1$lib"
	done
}

ca_bundle() {
	mkdir -p "$1/etc/ssl/certs"
	if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
		cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/"
	else
		: >"$1/etc/ssl/certs/ca-certificates.crt" # the images then talk to the mock only
	fi
}

go_binary() { # ROOTFS NAME PKG
	local version
	version=$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)
	mkdir -p "$1/usr/local/bin"
	(cd "$root" && CGO_ENABLED=0 go build -trimpath -tags timetzdata \
		-ldflags "-s -w -X github.com/wxpush/wxpush/internal/version.Version=$version" \
		-o "$1/usr/local/bin/$2" "$3")
	ca_bundle "$1"
}

fill() { # NAME ROOTFS
	local rootfs=$2
	case $1 in
	wxpushd) go_binary "$rootfs" wxpushd ./service/cmd/wxpushd ;;
	mockwx) go_binary "$rootfs" mockwx ./mockwx/cmd/mockwx ;;
	redis)
		need redis-server redis-server
		mkdir -p "$rootfs/usr/bin" "$rootfs/data" "$rootfs/tmp" "$rootfs/etc"
		copy_elf "$rootfs" redis-server
		copy_elf "$rootfs" redis-cli
		chmod 1777 "$rootfs/tmp" "$rootfs/data"
		echo "redis:x:999:999::/data:/usr/sbin/nologin" >"$rootfs/etc/passwd"
		;;
	prometheus)
		need prometheus prometheus
		[ -d /usr/share/prometheus/web ] || { echo "build.sh: /usr/share/prometheus/web missing (Debian's prometheus package ships it)" >&2; exit 1; }
		mkdir -p "$rootfs/usr/bin" "$rootfs/usr/share" "$rootfs/etc/prometheus" "$rootfs/prometheus" "$rootfs/tmp"
		copy_elf "$rootfs" prometheus
		copy_elf "$rootfs" promtool
		# The web UI, its links into /usr/share/javascript followed (Debian
		# ships the UI's libraries as separate packages), without
		# moment-timezone's raw data (200 MB the UI does not load).
		tar -C /usr/share -chf - --exclude='prometheus/web/static/moment-timezone/data' prometheus |
			tar -C "$rootfs/usr/share" -xf -
		for d in consoles console_libraries; do
			if [ -d "/etc/prometheus/$d" ]; then cp -r "/etc/prometheus/$d" "$rootfs/etc/prometheus/$d"; fi
		done
		cp "$here/prometheus/prometheus.yml" "$here/prometheus/alerts.yml" "$rootfs/etc/prometheus/"
		chmod 1777 "$rootfs/tmp" "$rootfs/prometheus"
		echo "nobody:x:65534:65534:nobody:/prometheus:/usr/sbin/nologin" >"$rootfs/etc/passwd"
		echo "nogroup:x:65534:" >"$rootfs/etc/group"
		;;
	esac
}

for name in "${names[@]}"; do
	case $name in
	wxpushd) tag=${WXPUSH_IMAGE:-wxpush/wxpushd:local} ;;
	mockwx) tag=${MOCKWX_IMAGE:-wxpush/mockwx:local} ;;
	redis) tag=${WXPUSH_REDIS_IMAGE:-wxpush/redis:local} ;;
	prometheus) tag=${WXPUSH_PROMETHEUS_IMAGE:-wxpush/prometheus:local} ;;
	*) echo "build.sh: unknown image $name (wxpushd, mockwx, redis, prometheus)" >&2; exit 2 ;;
	esac
	# Filled beside the context and swapped in, so an interrupted run
	# never leaves a half-filled rootfs/ for compose to build from.
	next=$here/$name/rootfs.next
	rm -rf "$next"
	mkdir -p "$next"
	fill "$name" "$next"
	rm -rf "$here/$name/rootfs"
	mv "$next" "$here/$name/rootfs"
	if [ $build -eq 1 ]; then
		# The legacy builder's deprecation banner is dropped; real errors pass.
		docker build -q -t "$tag" "$here/$name" 2>&1 >/dev/null |
			grep -vE 'DEPRECATED: The legacy builder|Install the buildx component|docs.docker.com/go/buildx|^[[:space:]]*$' >&2 || true
		[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "build.sh: docker build of $tag failed" >&2; exit 1; }
		echo "$tag"
	fi
done
