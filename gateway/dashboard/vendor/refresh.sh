#!/bin/sh
# Refreshes the dashboard's chart library from npm: uPlot at the version pinned
# here, its minified IIFE build, its stylesheet and its licence, and SHA256SUMS,
# which gateway's TestTheVendoredUPlotIsThePinnedVersion checks. Run it from
# anywhere (go generate ./gateway does); it needs npm and the registry.
set -eu
VERSION=1.6.32
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "uplot@$VERSION" >/dev/null && tar xzf "uplot-$VERSION.tgz")
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$tmp/package/LICENSE" "$here/"
cd "$here"
{ echo "# uplot $VERSION"; sha256sum uPlot.iife.min.js uPlot.min.css LICENSE; } > SHA256SUMS
echo "uplot $VERSION in $here"
