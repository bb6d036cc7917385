#!/usr/bin/env bash
# Build {{name}}.wasm with componentize-py {{componentize_py}} (installed into .venv on first use).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/componentize-py ]; then
  if command -v uv >/dev/null; then
    uv venv -q .venv && uv pip install -q --python .venv/bin/python "componentize-py=={{componentize_py}}"
  else
    python3 -m venv .venv && .venv/bin/pip install -q "componentize-py=={{componentize_py}}"
  fi
fi
.venv/bin/componentize-py -d wit -w flavor componentize app -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
