#!/bin/sh
# Install the Claude Code CLI version that tests/test_claude_code.py was
# written against, then print the absolute path of its executable on
# stdout, so that a caller can run:
#
#   LYNKR_CLAUDE_BIN=$(tests/install_claude_code.sh /opt/claude-code)
#
# npm's own output goes to stderr. Needs node >= 18 and npm. The native
# binary comes from an optional dependency, so npm must not omit optional
# packages.
set -eu

version=2.1.197

if [ "$#" -ne 1 ]; then
    echo "usage: $0 DIR  (the npm prefix to install Claude Code $version into)" >&2
    exit 2
fi

mkdir -p "$1"
prefix=$(cd "$1" && pwd)
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$version" >&2

claude="$prefix/node_modules/.bin/claude"
installed=$("$claude" --version)
case "$installed" in
    "$version "*) ;;
    *)
        echo "error: $claude reports version '$installed', expected $version" >&2
        exit 1
        ;;
esac
echo "$claude"
