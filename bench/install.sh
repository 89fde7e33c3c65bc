#!/usr/bin/env bash
# Benchmark (not a test): install N secrets (default 1000) encrypted to an ssh-ed25519 host key
# into a fresh ramfs with one `ragenix-install` process, then do what agenix's activation does
# (one `age -d` process per secret, chmod, mv, chown) on the same files; print both and the
# ratio. Target: ragenix <= 0.25 s wall for 1000 secrets on 2 cores.
# Needs root (ramfs mount in a private namespace), ssh-keygen and age. Usage: bench/install.sh [N]
set -euo pipefail

n=${1:-1000}
repo=$(cd "$(dirname "$0")/.." && pwd)
for tool in ssh-keygen age unshare; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: needs root (mounts a ramfs)" >&2; exit 1; }

cargo build --quiet --release --bin ragenix-install --manifest-path "$repo/Cargo.toml"
installer="$repo/target/release/ragenix-install"

work=$(mktemp -d /tmp/ragenix-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export LC_ALL=C
ssh-keygen -q -t ed25519 -N "" -C bench -f "$work/ssh_host_ed25519_key"
mkdir "$work/store"
echo "bench: encrypting $n secrets (setup, not timed)..." >&2
for i in $(seq 1 "$n"); do
  printf 'secret number %s\n' "$i" | age -R "$work/ssh_host_ed25519_key.pub" -o "$work/store/s$i.age"
done

{
  printf '{"version":1,"mode":"system","secretsDir":"%s","secretsMountPoint":"%s",' \
    "$work/run/agenix" "$work/run/agenix.d"
  printf '"identityPaths":["%s"],"secrets":[' "$work/ssh_host_ed25519_key"
  for i in $(seq 1 "$n"); do
    [ "$i" = 1 ] || printf ','
    printf '{"name":"s%s","file":"%s","path":"%s","owner":"nobody","group":"0"}' \
      "$i" "$work/store/s$i.age" "$work/run/agenix/s$i"
  done
  printf ']}\n'
} >"$work/manifest.json"

# ragenix: `runs` fresh installs, each in its own private mount namespace (a fresh ramfs).
runs=${RUNS:-5}
results=()
for _ in $(seq 1 "$runs"); do
  results+=("$(unshare --mount --propagation private bash -c '
    TIMEFORMAT="%R %U %S"
    { time "$0" "$1" 2>/dev/null; } 2>&1
    test "$(cat "$2/run/agenix/s$3")" = "secret number $3"
  ' "$installer" "$work/manifest.json" "$work" "$n")")
done

# agenix: newGeneration + installSecret per secret + cleanupAndLink + chownSecret per secret.
agenix=$(unshare --mount --propagation private bash -euo pipefail -c '
  work=$0 n=$1
  mp="$work/agenix.d"; dir="$work/agenix"
  TIMEFORMAT="%R %U %S"
  { time {
  mkdir -p "$mp"; chmod 0751 "$mp"
  grep -q "$mp ramfs" /proc/mounts || mount -t ramfs none "$mp" -o nodev,nosuid,mode=0751
  mkdir -p "$mp/1"; chmod 0751 "$mp/1"
  for i in $(seq 1 "$n"); do
    _truePath="$mp/1/s$i"
    TMP_FILE="$_truePath.tmp"
    mkdir -p "$(dirname "$_truePath")"
    (
      umask u=r,g=,o=
      test -f "$work/store/s$i.age"
      age --decrypt -i "$work/ssh_host_ed25519_key" -o "$TMP_FILE" "$work/store/s$i.age"
    )
    chmod 0400 "$TMP_FILE"
    mv -f "$TMP_FILE" "$_truePath"
  done
  ln -sfn "$mp/1" "$dir"
  for i in $(seq 1 "$n"); do chown nobody:0 "$mp/1/s$i"; done
  } ; } 2>&1
  test "$(cat "$dir/s$n")" = "secret number $n"
' "$work" "$n")

printf '%s\n' "${results[@]}" | sort -n | awk -v n="$n" -v agenix="$agenix" -v load="$(cut -d" " -f1 /proc/loadavg)" '
  { wall[NR] = $1; cpu[NR] = $2 + $3 }
  END {
    split(agenix, a, " ")
    med = wall[int((NR + 1) / 2)]
    printf "secrets:               %d (ssh-ed25519 host key, fresh ramfs per run)\n", n
    printf "load average (1 min):  %s on %d cores\n", load, '"$(nproc)"'
    printf "ragenix-install:       best %.3f s, median %.3f s wall over %d runs; cpu %.3f s (one process)\n", wall[1], med, NR, cpu[1]
    printf "agenix-style loop:     %.3f s wall, cpu %.3f s (one age -d per secret)\n", a[1], a[2] + a[3]
    printf "ratio agenix/ragenix:  %.1fx (median)\n", a[1] / med
    if (n == 1000) printf "target <= 0.25 s:      %s (median)\n", (med <= 0.25 ? "met" : "MISSED")
  }'
