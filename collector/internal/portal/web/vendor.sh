#!/bin/sh
# Copies the dist files of the portal's npm dependencies (installed in
# NODE_MODULES from package-lock.json) into OUT, which the collector embeds
# as static/vendor. Used by `make portal` and the collector's Dockerfile.
# Usage: vendor.sh NODE_MODULES OUT
set -eu
nm=$1 out=$2
rm -rf "$out"
mkdir -p "$out/images"
cp "$nm/leaflet/dist/leaflet.js" "$nm/leaflet/dist/leaflet.css" "$out/"
cp "$nm"/leaflet/dist/images/* "$out/images/"
cp "$nm/leaflet/LICENSE" "$out/LICENSE.leaflet.txt"
cp "$nm/leaflet.markercluster/dist/leaflet.markercluster.js" \
   "$nm/leaflet.markercluster/dist/MarkerCluster.css" \
   "$nm/leaflet.markercluster/dist/MarkerCluster.Default.css" "$out/"
cp "$nm/leaflet.markercluster/MIT-LICENCE.txt" "$out/LICENSE.markercluster.txt"
cp "$nm/uplot/dist/uPlot.iife.min.js" "$nm/uplot/dist/uPlot.min.css" "$out/"
cp "$nm/uplot/LICENSE" "$out/LICENSE.uplot.txt"
