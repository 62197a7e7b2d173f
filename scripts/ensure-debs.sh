#!/usr/bin/env bash
# Install the Debian packages given as arguments when their command is missing.
# Arguments are PACKAGE or PACKAGE:COMMAND (when the command name differs).
set -euo pipefail
missing=()
for spec in "$@"; do
  pkg=${spec%%:*}
  cmd=${spec#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "ensure-debs: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
