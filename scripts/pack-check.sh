#!/usr/bin/env bash
# Checks that `npm pack` yields a package that installs and runs on its own:
#   1. a clean build of configs.ts and src/ into a staging folder (the repo's dist/ is not touched),
#   2. `npm pack` there with the repo's package.json ("files" decides what ships),
#   3. the tarball holds dist/src and dist/configs.js, and no tests, scripts, sources or maps,
#   4. `npm install -g --prefix <temp>` of the tarball (dependencies come from the npm registry),
#   5. `<prefix>/bin/udptorrent --help`, then a smoke run: a tracker and two nodes on 127.0.0.1
#      with ephemeral ports; both print their listening lines and a small file goes from one node
#      to the other, verified.
# Prints "pack-check: OK" and exits 0, or says what failed and exits 1. Needs node, npm, tar.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/udptorrent-pack-XXXXXX")
PIDS=()

cleanup () {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ "${KEEP_PACK_CHECK:-}" == "" ]]; then rm -rf "$WORK"; else echo "pack-check: kept $WORK"; fi
}
trap cleanup EXIT

fail () {
  echo "pack-check: FAILED: $*" >&2
  for f in "$WORK"/*.out; do [[ -f "$f" ]] && { echo "--- $f" >&2; cat "$f" >&2; }; done
  exit 1
}

# wait_for FILE REGEX [SECONDS]: polls FILE until a line matches the (extended) regex.
wait_for () {
  local file=$1 re=$2 deadline=$((SECONDS + ${3:-20}))
  until grep -Eq "$re" "$file" 2>/dev/null; do
    (( SECONDS < deadline )) || fail "no line matching /$re/ in $file within ${3:-20} s"
    sleep 0.1
  done
}

echo "pack-check: building into $WORK/stage"
mkdir -p "$WORK/stage"
cp "$ROOT/package.json" "$ROOT/README.md" "$WORK/stage/"
[[ -f "$ROOT/LICENSE" ]] && cp "$ROOT/LICENSE" "$WORK/stage/"
# The optional addon's sources (the package builds it at install), not a build of it.
mkdir -p "$WORK/stage/native"
cp "$ROOT/native/binding.gyp" "$ROOT/native/build.mjs" "$ROOT/native/udp_gso.c" "$WORK/stage/native/"
# Only what ships (configs.ts and src/), with the repo's compiler options: scripts/ is not packed.
cat > "$WORK/tsconfig.pack.json" <<JSON
{
  "extends": "$ROOT/tsconfig.json",
  "compilerOptions": { "rootDir": "$ROOT", "outDir": "$WORK/stage/dist", "sourceMap": false, "typeRoots": ["$ROOT/node_modules/@types"] },
  "include": ["$ROOT/configs.ts", "$ROOT/src/**/*.ts"]
}
JSON
(cd "$ROOT" && npx --no-install tsc -p "$WORK/tsconfig.pack.json" > "$WORK/tsc.out" 2>&1) || fail "tsc failed: $(cat "$WORK/tsc.out")"

echo "pack-check: npm pack"
(cd "$WORK/stage" && npm pack --ignore-scripts --silent --pack-destination "$WORK" >/dev/null) || fail "npm pack failed"
TARBALL=$(ls "$WORK"/udptorrent-*.tgz)
tar -tzf "$TARBALL" | sort > "$WORK/contents.txt"
for need in package/package.json package/dist/configs.js package/dist/src/cli.js package/dist/src/node/main.js package/dist/src/tracker/main.js; do
  grep -qx "$need" "$WORK/contents.txt" || fail "$need is missing from the tarball"
done
if grep -E '^package/(tests|scripts|src)/|^package/dist/(tests|scripts)/|\.map$|\.ts$' "$WORK/contents.txt"; then
  fail "the tarball holds files it should not (above)"
fi
echo "pack-check: $(basename "$TARBALL"): $(wc -l < "$WORK/contents.txt") files, $(du -k "$TARBALL" | cut -f1) KB"

echo "pack-check: npm install -g --prefix $WORK/prefix"
mkdir -p "$WORK/prefix"
npm install -g --prefix "$WORK/prefix" --no-audit --no-fund --loglevel=error "$TARBALL" > "$WORK/install.out" 2>&1 || fail "npm install -g failed"
BIN="$WORK/prefix/bin/udptorrent"
[[ -x "$BIN" ]] || fail "$BIN is not an executable"

# From a folder with nothing in it, with no UDPTORRENT_* settings leaking in from the caller.
mkdir -p "$WORK/run"
cd "$WORK/run"
for v in $(env | grep -o '^UDPTORRENT_[A-Z_]*' || true); do unset "$v"; done

"$BIN" --help > "$WORK/help.out" 2>&1 || fail "udptorrent --help exited non-zero"
grep -q 'udptorrent tracker' "$WORK/help.out" || fail "--help does not list the tracker command"
grep -q 'udptorrent node' "$WORK/help.out" || fail "--help does not list the node command"

echo "pack-check: smoke run"
HOME_DIR="$WORK/run/home"
mkdir -p "$HOME_DIR/node_files/node1"
head -c 300000 /dev/urandom > "$HOME_DIR/node_files/node1/smoke.bin"
"$BIN" tracker --home "$HOME_DIR" --host 127.0.0.1 --port 0 > "$WORK/tracker.out" 2>&1 < /dev/null &
PIDS+=($!)
wait_for "$WORK/tracker.out" '^tracker listening on 127\.0\.0\.1:[0-9]+'
TRACKER=$(grep -Eo '^tracker listening on [0-9.]+:[0-9]+' "$WORK/tracker.out" | grep -Eo '[0-9.]+:[0-9]+$')

"$BIN" node --id 1 --home "$HOME_DIR" --host 127.0.0.1 --tracker "$TRACKER" --send smoke.bin > "$WORK/node1.out" 2>&1 < /dev/null &
PIDS+=($!)
wait_for "$WORK/node1.out" '^node 1 listening on 127\.0\.0\.1:[0-9]+'
wait_for "$WORK/node1.out" '^sharing smoke\.bin'

"$BIN" node --id 2 --home "$HOME_DIR" --host 127.0.0.1 --tracker "$TRACKER" --download smoke.bin --exit-when-done > "$WORK/node2.out" 2>&1 < /dev/null &
NODE2=$!
PIDS+=($NODE2)
wait_for "$WORK/node2.out" '^node 2 listening on 127\.0\.0\.1:[0-9]+'
wait_for "$WORK/node2.out" '^download complete: smoke\.bin' 30
code=0
wait "$NODE2" || code=$?
[[ $code -eq 0 ]] || fail "node 2 exited with $code after its download"
cmp -s "$HOME_DIR/node_files/node1/smoke.bin" "$HOME_DIR/node_files/node2/smoke.bin" || fail "the downloaded copy differs"

# SIGTERM: both leave cleanly (exit 0) and say so.
for i in 0 1; do kill -TERM "${PIDS[$i]}"; done
deadline=$((SECONDS + 15))
for i in 0 1; do
  while kill -0 "${PIDS[$i]}" 2>/dev/null; do
    (( SECONDS < deadline )) || fail "process ${PIDS[$i]} did not stop on SIGTERM"
    sleep 0.1
  done
  code=0
  wait "${PIDS[$i]}" || code=$?
  [[ $code -eq 0 ]] || fail "process ${PIDS[$i]} exited with $code on SIGTERM"
done
grep -q '^tracker stopped (SIGTERM)' "$WORK/tracker.out" || fail "the tracker did not report its stop"
grep -q '^node 1 stopped (SIGTERM)' "$WORK/node1.out" || fail "node 1 did not report its stop"

echo "pack-check: OK"
