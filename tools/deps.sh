#!/bin/sh
# Install what miser needs on Debian, only what is missing.
#   tools/deps.sh         build + run dependencies
#   tools/deps.sh test    also what the test suite needs (Criterion, clang for
#                         fuzzing, numpy for the reference model, node + the
#                         gpt-3-encoder reference tokenizer)
# Each need is "package:probe": the Debian package is installed only when the
# probe (a command on PATH, or an absolute file path) is missing, so tools that
# came from elsewhere (e.g. a NodeSource node with its own npm) are respected.
set -e
cd "$(dirname "$0")/.."
needs="make:make gcc:gcc pkg-config:pkg-config libcjson-dev:/usr/include/cjson/cJSON.h
libutf8proc-dev:/usr/include/utf8proc.h"
if [ "${1:-}" = test ]; then
  needs="$needs libcriterion-dev:/usr/include/criterion/criterion.h clang:clang
libclang-rt-14-dev:/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a
python3:/usr/bin/python3 python3-numpy:/usr/lib/python3/dist-packages/numpy/__init__.py
nodejs:node npm:npm"
fi
missing=
for need in $needs; do
  pkg=${need%%:*}
  probe=${need#*:}
  case "$probe" in
    /*) [ -e "$probe" ] && continue ;;
    *) command -v "$probe" >/dev/null 2>&1 && continue ;;
  esac
  missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "deps: installing Debian packages:$missing"
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if [ "${1:-}" = test ] && [ ! -f tools/node_modules/gpt-3-encoder/Encoder.js ]; then
  echo "deps: installing npm package gpt-3-encoder (reference tokenizer for tests)"
  (cd tools && npm ci --no-audit --no-fund --silent >/dev/null 2>&1 || npm install --no-audit --no-fund --silent >/dev/null)
fi
echo "deps: ok"
