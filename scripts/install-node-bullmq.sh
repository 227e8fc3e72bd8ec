#!/usr/bin/env bash
# Install one published Node bullmq version for the interop suite, beside the fixture's fixed
# matrix: node_fixture/.custom/<version>/node_modules/bullmq (gitignored). The fixture runs it with
# TWENTY_JOBS_NODE_BULLMQ=<version> (node_fixture/lib/bullmq.js). Used by `make interop
# NODE_BULLMQ=<version>`, so a team can check twenty-jobs against the exact bullmq its Twenty pins.
#
#   bash scripts/install-node-bullmq.sh 5.78.0
#
# A second run for an installed version does nothing.
set -euo pipefail

version="${1:-}"
if [[ ! "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "NODE_BULLMQ must be an exact published bullmq version such as 5.78.0 (got '${version}')" >&2
  exit 2
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/node_fixture/.custom/$version"
if [ -f "$dir/node_modules/bullmq/package.json" ]; then
  exit 0
fi

# The fixture's own ioredis pin (Twenty's client): bullmq 6 takes ioredis as a peer and uses it;
# bullmq 5 brings the ioredis it pins, nested under it when the two differ. The msgpackr-extract
# override is the fixture's too (node_fixture/package.json says why).
ioredis="$(node -p "require('$root/node_fixture/package.json').dependencies.ioredis")"
extract="$(node -p "require('$root/node_fixture/package.json').overrides['msgpackr-extract']")"

rm -rf "$dir"
mkdir -p "$dir"
cat >"$dir/package.json" <<JSON
{
  "name": "twenty-jobs-node-bullmq-$version",
  "private": true,
  "dependencies": { "bullmq": "$version", "ioredis": "$ioredis" },
  "overrides": { "msgpackr-extract": "$extract" }
}
JSON

if ! (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >"$dir/npm-install.log" 2>&1); then
  echo "could not install bullmq $version from the npm registry (is it a published version?):" >&2
  tail -n 5 "$dir/npm-install.log" >&2
  rm -rf "$dir"
  exit 1
fi
echo "installed Node bullmq $version in node_fixture/.custom/$version"
