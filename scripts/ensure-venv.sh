#!/usr/bin/env bash
# Create the virtualenv; on a bare Debian, install python3-venv first (when root).
set -euo pipefail
python="$1"; venv="$2"
[ -x "$venv/bin/python" ] && exit 0
if ! "$python" -m venv "$venv" 2>/dev/null; then
  rm -rf "$venv"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$python" -m venv "$venv"
  else
    echo "Cannot create a virtualenv: install python3-venv (Python 3.11+)." >&2; exit 1
  fi
fi
"$venv/bin/pip" install --disable-pip-version-check -q --upgrade pip
