#!/usr/bin/env bash
# Refresh the Swagger UI bundle that GET /docs serves (vendored so the docs
# page works offline and `sam build` needs no Node.js). Usage:
#   devtools/vendor-swagger-ui.sh [version]      (default: the pinned one)
set -euo pipefail
version="${1:-5.35.0}"
dest="$(cd "$(dirname "$0")/.." && pwd)/shared/assets/swagger-ui"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# npm pack verifies the tarball against the registry's integrity hash.
(cd "$work" && npm pack --silent "swagger-ui-dist@${version}" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
mkdir -p "$dest"
cp "$work/package/swagger-ui-bundle.js" "$work/package/LICENSE" "$work/package/NOTICE" "$dest/"
# Drop the source-map reference: the map is not shipped.
sed '/sourceMappingURL=/d' "$work/package/swagger-ui.css" > "$dest/swagger-ui.css"
{
    echo "swagger-ui-dist ${version} (https://www.npmjs.com/package/swagger-ui-dist), Apache-2.0."
    echo "Vendored by devtools/vendor-swagger-ui.sh; served by GET /docs (shared/http/src/docs.rs)."
    echo
    (cd "$dest" && sha256sum swagger-ui-bundle.js swagger-ui.css)
} > "$dest/VERSION"
echo "vendored swagger-ui-dist ${version} into ${dest}"
