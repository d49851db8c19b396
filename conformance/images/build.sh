#!/usr/bin/env bash
# Builds the FROM-scratch images of wxpushd and mockwx from static binaries
# (CGO_ENABLED=0, -tags timetzdata), with no pull: wxpush/wxpushd:local and
# wxpush/mockwx:local (override with WXPUSH_IMAGE / MOCKWX_IMAGE).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
ldflags="-s -w -X github.com/wxpush/wxpush/internal/version.Version=$version"
for name in wxpushd mockwx; do
	ctx=$(mktemp -d)
	trap 'rm -rf "$ctx"' EXIT
	case $name in
	wxpushd) pkg=./service/cmd/wxpushd tag=${WXPUSH_IMAGE:-wxpush/wxpushd:local} ;;
	mockwx) pkg=./mockwx/cmd/mockwx tag=${MOCKWX_IMAGE:-wxpush/mockwx:local} ;;
	esac
	CGO_ENABLED=0 go build -trimpath -tags timetzdata -ldflags "$ldflags" -o "$ctx/$name" "$pkg"
	if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
		cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
	else
		: >"$ctx/ca-certificates.crt"
	fi
	cp "conformance/images/$name/Dockerfile" "$ctx/Dockerfile"
	docker build -q -t "$tag" "$ctx" >/dev/null
	rm -rf "$ctx"
	trap - EXIT
	echo "$tag"
done
