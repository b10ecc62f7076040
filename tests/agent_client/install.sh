#!/usr/bin/env bash
# Installs just enough of PostHog's published agent package to import its API client:
# the pinned @posthog/agent tarball (its other dependencies — agent SDKs, model clients — are
# large and unused by `@posthog/agent/posthog-api`) plus zod, the only module that file imports.
# Usage: install.sh DIR   (idempotent; DIR/node_modules holds the result)
set -euo pipefail
AGENT_VERSION=2.4.187
ZOD_VERSION=4.6.7
dir=${1:?usage: install.sh DIR}
marker="$dir/.installed-$AGENT_VERSION-$ZOD_VERSION"
[ -f "$marker" ] && exit 0
rm -rf "$dir" && mkdir -p "$dir"
cd "$dir"
echo '{"name": "taskruns-agent-client-test", "private": true, "type": "module"}' > package.json
# zod first: a later `npm install` would prune the hand-placed agent package as extraneous.
npm install --silent --no-audit --no-fund --no-package-lock --ignore-scripts "zod@$ZOD_VERSION"
npm pack --silent "@posthog/agent@$AGENT_VERSION" > /dev/null
mkdir -p node_modules/@posthog/agent
tar xzf "posthog-agent-$AGENT_VERSION.tgz" -C node_modules/@posthog/agent --strip-components=1
rm "posthog-agent-$AGENT_VERSION.tgz"
touch "$marker"
