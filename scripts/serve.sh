#!/usr/bin/env bash
# Sets up, builds and starts the HTTP server on the built-in demo model (docs/serve.md):
#   scripts/serve.sh            -> open http://127.0.0.1:7860/ (the web page) or call the API
# Extra arguments go to `sdpal serve` (e.g. --port 8080, --model DIR).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/build.sh" >&2
exec "$root/build/sdpal" serve "$@"
