#!/bin/sh
# Install what miser needs on Debian, only what is missing.
#   tools/deps.sh         build + run dependencies
#   tools/deps.sh test    also what the test suite needs (Criterion, clang for
#                         fuzzing, numpy for the reference model, node + the
#                         gpt-3-encoder reference tokenizer)
set -e
cd "$(dirname "$0")/.."
want="make gcc pkg-config libcjson-dev libutf8proc-dev"
if [ "${1:-}" = test ]; then
  want="$want libcriterion-dev clang libclang-rt-14-dev python3 python3-numpy nodejs npm"
fi
missing=
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "deps: installing Debian packages:$missing"
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if [ "${1:-}" = test ] && [ ! -f tools/node_modules/gpt-3-encoder/Encoder.js ]; then
  echo "deps: installing npm package gpt-3-encoder (reference tokenizer for tests)"
  (cd tools && npm install --no-audit --no-fund --silent >/dev/null)
fi
echo "deps: ok"
