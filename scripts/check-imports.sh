#!/usr/bin/env bash
# Enforces the dependency direction: adapters (stores, key services, the HTTP
# API) never import each other, and only cmd/ wires drivers together.
set -euo pipefail
cd "$(dirname "$0")/.."

mod=github.com/deputyhq/deputy
adapters=(sqlite postgres elasticsearch uiam httpapi client builtin)
status=0
for a in "${adapters[@]}"; do
	[ -d "$a" ] || continue
	deps=$(go list -deps "./$a/..." 2>/dev/null | grep "^$mod/" || true)
	for b in "${adapters[@]}"; do
		[ "$a" = "$b" ] && continue
		if grep -qx "$mod/$b" <<<"$deps"; then
			echo "check-imports: $a must not import $b" >&2
			status=1
		fi
	done
done
exit $status
