#!/usr/bin/env bash
# Usage: scripts/post_query.sh HOST PORT "SQL"
# POSTs the SQL to http://HOST:PORT/query and prints the response body.
# The JSON body is built by python3 (json.dumps), so any quotes or backslashes in the SQL
# arrive intact. With API_TOKEN set, sends "Authorization: Bearer $API_TOKEN" (read by curl
# from stdin, so the token never shows in the process list).
# Exit status: 0 for a 2xx answer, 1 for an HTTP error, 2 for bad usage or no answer.
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 HOST PORT \"SQL\"" >&2
  exit 2
fi
host=$1 port=$2 sql=$3
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "$0: $tool is required" >&2; exit 2; }
done

body=$(python3 -c 'import json, sys; print(json.dumps({"query": sys.argv[1]}))' "$sql")
headers=("Content-Type: application/json")
if [[ -n "${API_TOKEN:-}" ]]; then
  headers+=("Authorization: Bearer ${API_TOKEN}")
fi

response=$(mktemp)
trap 'rm -f "$response"' EXIT
status=$(printf '%s\n' "${headers[@]}" | curl --silent --show-error --max-time 120 \
  --header @- --output "$response" --write-out '%{http_code}' \
  --data-binary "$body" "http://${host}:${port}/query") || {
  echo "$0: no answer from http://${host}:${port}/query" >&2
  exit 2
}
cat "$response"
echo
[[ $status == 2* ]]  || exit 1
