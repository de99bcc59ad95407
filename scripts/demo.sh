#!/usr/bin/env bash
# Sets up, builds and generates an image with the built-in demo model:
#   scripts/demo.sh "a photo of a sneaker"     -> out.png
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/build.sh" >&2
prompt="${1:-a photo of a sneaker}"
shift || true
exec "$root/build/sdpal" generate --prompt "$prompt" "$@"
