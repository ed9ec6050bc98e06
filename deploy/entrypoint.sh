#!/bin/sh
# Secrets come as files (compose or Kubernetes secrets under /run/secrets), never as arguments
# a process listing shows: each file named kamiyo_<name> becomes the variable KAMIYO_<NAME> for
# the command, e.g. /run/secrets/kamiyo_secret_key -> KAMIYO_SECRET_KEY.
set -eu
if [ -d /run/secrets ]; then
    for file in /run/secrets/kamiyo_*; do
        [ -f "$file" ] || continue
        name=$(basename "$file" | tr '[:lower:]' '[:upper:]')
        value=$(cat "$file")
        export "$name=$value"
    done
fi
exec "$@"
