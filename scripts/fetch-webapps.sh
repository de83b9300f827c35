#!/usr/bin/env bash
# Fetch pinned releases of real web apps from the npm registry, for tests and
# benchmarks. Each tarball is pinned by name, version and sha256 in
# scripts/webapps.lock, downloaded with `npm pack`, verified, cached, and
# unpacked to $CACHE/NAME@VERSION/package/... ('/' in NAME becomes '+').
#
# Usage: scripts/fetch-webapps.sh [NAME...]
#   NAME...  fetch only these package names (default: every line of the lock)
#
# Environment:
#   BALEEN_WEBAPPS_LOCK   lock file (default: scripts/webapps.lock next to this script)
#   BALEEN_WEBAPPS_CACHE  cache dir (default: ${XDG_CACHE_HOME:-$HOME/.cache}/baleen/webapps)
#
# Progress goes to stderr. On success the last line of stdout is the cache dir:
#   dir=$(scripts/fetch-webapps.sh | tail -1)
# Re-running is a no-op when everything is cached and verified.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOCK=${BALEEN_WEBAPPS_LOCK:-$script_dir/webapps.lock}
CACHE=${BALEEN_WEBAPPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baleen/webapps}

log() { printf 'fetch-webapps: %s\n' "$*" >&2; }
die() { printf 'fetch-webapps: ERROR: %s\n' "$*" >&2; exit 1; }

command -v npm >/dev/null || die "npm not found on PATH"
command -v sha256sum >/dev/null || die "sha256sum not found on PATH"
[[ -f $LOCK ]] || die "lock file not found: $LOCK"

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

# Serialise concurrent runs sharing one cache (e.g. parallel test jobs).
if command -v flock >/dev/null; then
    exec 9>"$CACHE/.fetch.lock"
    flock 9
fi

# --- parse the lock -------------------------------------------------------
names=() versions=() shas=()
lineno=0
while IFS= read -r line || [[ -n $line ]]; do
    lineno=$((lineno + 1))
    line=${line%%#*}
    read -r -a f <<<"$line" || true
    ((${#f[@]} == 0)) && continue
    ((${#f[@]} == 3)) || die "$LOCK:$lineno: expected 'name version sha256', got: $line"
    [[ ${f[2]} =~ ^[0-9a-f]{64}$ ]] || die "$LOCK:$lineno: bad sha256 '${f[2]}'"
    names+=("${f[0]}") versions+=("${f[1]}") shas+=("${f[2]}")
done <"$LOCK"
((${#names[@]} > 0)) || die "$LOCK: no entries"

# --- select entries -------------------------------------------------------
declare -A want=()
for arg in "$@"; do
    found=0
    for n in "${names[@]}"; do [[ $n == "$arg" ]] && found=1; done
    ((found)) || die "'$arg' is not in $LOCK"
    want[$arg]=1
done

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

tmp_root=$(mktemp -d "$CACHE/.tmp.XXXXXX")
trap 'rm -rf "$tmp_root"' EXIT

failed=0
fetched=0
for i in "${!names[@]}"; do
    name=${names[$i]} version=${versions[$i]} sha=${shas[$i]}
    if (($# > 0)) && [[ -z ${want[$name]:-} ]]; then continue; fi
    key="${name//\//+}@$version"
    tgz="$CACHE/$key.tgz"
    dest="$CACHE/$key"

    # 1. tarball: reuse when present and verified, otherwise (re)download.
    if [[ -f $tgz ]] && [[ $(sha_of "$tgz") == "$sha" ]]; then
        :
    else
        [[ -e $tgz ]] && log "$key: cached tarball has wrong sha256, re-downloading"
        rm -f "$tgz"
        log "$key: downloading with npm pack"
        dl="$tmp_root/dl-$i"
        mkdir -p "$dl"
        if ! out=$(cd "$dl" && npm pack "$name@$version" --silent --ignore-scripts --pack-destination "$dl" 2>&1); then
            printf '%s\n' "$out" >&2
            die "$key: npm pack $name@$version failed"
        fi
        file=$(find "$dl" -maxdepth 1 -name '*.tgz' -print -quit)
        [[ -n $file ]] || die "$key: npm pack produced no tarball (output: $out)"
        actual=$(sha_of "$file")
        if [[ $actual != "$sha" ]]; then
            rm -f "$file"
            {
                echo "fetch-webapps: ERROR: sha256 mismatch, downloaded file deleted"
                echo "  name:     $name"
                echo "  version:  $version"
                echo "  expected: $sha"
                echo "  actual:   $actual"
                echo "  lock:     $LOCK"
            } >&2
            failed=$((failed + 1))
            continue
        fi
        mv -f "$file" "$tgz"
        fetched=$((fetched + 1))
        log "$key: ok ($(wc -c <"$tgz" | tr -d " ") bytes)"
    fi

    # 2. unpacked tree: the marker records which tarball it came from.
    if [[ -d $dest/package && -f $dest/.tarball-sha256 ]] \
        && [[ $(<"$dest/.tarball-sha256") == "$sha" ]]; then
        continue
    fi
    log "$key: unpacking"
    un="$tmp_root/un-$i"
    mkdir -p "$un"
    tar -xzf "$tgz" -C "$un" --no-same-owner --no-same-permissions
    [[ -d $un/package ]] || die "$key: tarball has no top-level package/ directory"
    printf '%s\n' "$sha" >"$un/.tarball-sha256"
    if [[ -e $dest ]]; then
        mv "$dest" "$tmp_root/old-$i"   # stale or partial tree; removed on exit
    fi
    mv "$un" "$dest"
done

if ((failed > 0)); then
    die "$failed tarball(s) failed sha256 verification"
fi
((fetched == 0)) && log "all requested tarballs already cached and verified"
printf '%s\n' "$CACHE"
