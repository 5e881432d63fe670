#!/usr/bin/env bash
# Installs a released shipit for the GitHub Actions runner this runs on. Used by ../action.yml;
# see docs/action.md. Written for bash 3.2 (macOS) and Git Bash (Windows) as much as for Linux.
#
#   install.sh plan      print what would be installed (key=value lines), change nothing
#   install.sh resolve   the same, also written to "$GITHUB_OUTPUT" for the steps after it
#   install.sh install   download, verify the SHA-256, extract, put the binary's dir on "$GITHUB_PATH"
#
# Environment (set by action.yml):
#   SHIPIT_VERSION       the `version` input: 0.1.0 or v0.1.0; empty means the action's own tag
#   SHIPIT_ACTION_REF    github.action_ref (it must come through `env:`: composite actions get no
#                        GITHUB_ACTION_REF); GITHUB_ACTION_PATH's last part is tried when empty
#   RUNNER_OS, RUNNER_ARCH, RUNNER_TOOL_CACHE, RUNNER_TEMP, GITHUB_PATH, GITHUB_OUTPUT: the runner's
#   SHIPIT_CACHE_HIT     actions/cache's cache-hit output, only for the log
#   SHIPIT_RELEASE_BASE_URL   where releases live (tests point it at a file:// directory)
set -euo pipefail

default_base_url=https://github.com/shipit-dev/shipit/releases/download

# A workflow command's message, with the characters the runner would misread escaped.
escape() {
  local s=$1
  s=${s//\%/%25}
  s=${s//$'\r'/%0D}
  s=${s//$'\n'/%0A}
  printf '%s' "$s"
}
error() { printf '::error title=shipit install::%s\n' "$(escape "$*")"; }
warning() { printf '::warning title=shipit install::%s\n' "$(escape "$*")"; }
die() {
  error "$@"
  exit 1
}

# The shipit version to install, without the leading v.
resolve_version() {
  local v=${SHIPIT_VERSION:-} ref
  v=${v#"${v%%[![:space:]]*}"}
  v=${v%"${v##*[![:space:]]}"}
  if [ -z "$v" ]; then
    ref=${SHIPIT_ACTION_REF:-}
    if [ -z "$ref" ] && [ -n "${GITHUB_ACTION_PATH:-}" ]; then
      # Remote actions are checked out at .../_actions/<owner>/<repo>/<ref>.
      ref=$(basename "$GITHUB_ACTION_PATH")
    fi
    if ! [[ $ref =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]]; then
      die "cannot tell which shipit to install: this action is used at '${ref:-an unknown ref}', not at a release tag like v0.1.0. Set the action's \`version\` input, for example \`version: 0.1.0\`."
    fi
    v=$ref
  fi
  v=${v#v}
  if ! [[ $v =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]]; then
    die "'${SHIPIT_VERSION:-$v}' is not a shipit version: give one like 0.1.0 or v0.1.0 (\`version\` input)."
  fi
  version=$v
}

# The release target for this runner, from RUNNER_OS and RUNNER_ARCH.
resolve_target() {
  os=${RUNNER_OS:-}
  arch=${RUNNER_ARCH:-}
  case "$os/$arch" in
    Linux/X64) target=x86_64-unknown-linux-musl ;;
    Linux/ARM64) target=aarch64-unknown-linux-musl ;;
    macOS/X64) target=x86_64-apple-darwin ;;
    macOS/ARM64) target=aarch64-apple-darwin ;;
    Windows/X64) target=x86_64-pc-windows-msvc ;;
    *)
      die "shipit has no release for a runner with RUNNER_OS='$os' and RUNNER_ARCH='$arch'. Supported: Linux X64, Linux ARM64, macOS X64, macOS ARM64, Windows X64."
      ;;
  esac
  if [ "$os" = Windows ]; then
    archive=shipit-cli-$target.zip
    bin_name=shipit.exe
  else
    archive=shipit-cli-$target.tar.xz
    bin_name=shipit
  fi
}

# A path as bash uses it, and as the runner and other actions want it (Windows paths on Windows).
unix_path() {
  if [ "$os" = Windows ] && command -v cygpath >/dev/null 2>&1; then cygpath -u "$1"; else printf '%s' "$1"; fi
}
native_path() {
  if [ "$os" = Windows ] && command -v cygpath >/dev/null 2>&1; then cygpath -w "$1"; else printf '%s' "$1"; fi
}

plan() {
  resolve_version
  resolve_target
  local base=${SHIPIT_RELEASE_BASE_URL:-$default_base_url}
  base=${base%/}
  url=$base/v$version/$archive
  checksum_url=$url.sha256
  local root=${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-}}
  [ -n "$root" ] || die "neither RUNNER_TOOL_CACHE nor RUNNER_TEMP is set: is this running on a GitHub Actions runner?"
  dir=$(unix_path "$root")/shipit/$version/$target
}

print_plan() {
  printf '%s=%s\n' version "$version" target "$target" archive "$archive" url "$url" \
    checksum_url "$checksum_url" dir "$(native_path "$dir")"
}

fetch() {
  curl --fail --silent --show-error --location --proto '=https,file' --proto-redir '=https' \
    --retry 5 --retry-delay 2 --retry-connrefused --connect-timeout 30 --output "$2" "$1"
}

pick_hasher() {
  if command -v sha256sum >/dev/null 2>&1; then
    hasher=(sha256sum -b)
  elif command -v shasum >/dev/null 2>&1; then
    hasher=(shasum -a 256 -b)
  else
    die "neither sha256sum nor shasum is on PATH: cannot verify the download"
  fi
}

sha256_of() {
  # Hash a name without directories: GNU tools put a backslash before the digest of odd names.
  local d=${1%/*} f=${1##*/} out
  out=$(cd "$d" && "${hasher[@]}" -- "$f") || return 1
  printf '%s' "${out%% *}" | tr 'A-F' 'a-f'
}

# The digest in a checksum file: "<hex> <name>", "<hex>  <name>" or "<hex> *<name>".
expected_digest() {
  local line
  line=$(tr -d '\r' <"$1" | awk 'NF { print $1; exit }' | tr 'A-F' 'a-f')
  [[ $line =~ ^[0-9a-f]{64}$ ]] || return 1
  printf '%s' "$line"
}

extract() {
  mkdir -p "$2"
  case "$1" in
    *.tar.xz) tar -xJf "$1" -C "$2" ;;
    *.zip)
      if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$1" -d "$2"
      elif command -v 7z >/dev/null 2>&1; then
        7z x -y -bd -o"$2" "$1" >/dev/null
      else
        die "neither unzip nor 7z is on PATH: cannot unpack $archive"
      fi
      ;;
  esac
}

install() {
  plan
  pick_hasher
  local expected actual source cached=$dir/$archive found new
  local tmp_root=${RUNNER_TEMP:-${TMPDIR:-/tmp}}
  work=$(mktemp -d "$(unix_path "$tmp_root")/shipit-install.XXXXXX") || die "cannot make a directory in $tmp_root"
  trap 'rm -rf "$work"' EXIT

  echo "shipit $version for $os $arch: $archive"
  fetch "$checksum_url" "$work/$archive.sha256" || die "could not download $checksum_url"
  expected=$(expected_digest "$work/$archive.sha256") ||
    die "$checksum_url does not hold a SHA-256 digest of $archive"

  # A cached archive is used only if it still matches the release's published digest: the
  # binary that runs always comes out of an archive verified in this run.
  source=
  if [ -f "$cached" ]; then
    actual=$(sha256_of "$cached") || die "cannot hash $cached"
    if [ "$actual" = "$expected" ]; then
      echo "using the cached $archive (sha256 $actual)"
      source=$cached
    else
      warning "the cached $archive has SHA-256 $actual, not the release's $expected; downloading it again"
      rm -f "$cached"
    fi
  elif [ "${SHIPIT_CACHE_HIT:-}" = true ]; then
    warning "the cache was restored but holds no $archive; downloading it"
  fi

  if [ -z "$source" ]; then
    echo "downloading $url"
    fetch "$url" "$work/$archive" || die "could not download $url"
    actual=$(sha256_of "$work/$archive") || die "cannot hash the downloaded $archive"
    if [ "$actual" != "$expected" ]; then
      rm -f "$work/$archive"
      die "checksum mismatch for $archive: expected SHA-256 $expected (from $archive.sha256), got $actual. Nothing was installed."
    fi
    echo "verified sha256 $actual"
    source=$work/$archive
  fi

  extract "$source" "$work/unpacked" || die "cannot unpack $archive"
  # At the archive's root, or in a top-level directory named like it: the shallowest wins.
  found=$(find "$work/unpacked" -type f -name "$bin_name" | awk '{ print gsub("/", "/") "\t" $0 }' |
    sort -n | head -n 1 | cut -f 2-)
  [ -n "$found" ] || die "$archive holds no $bin_name"

  mkdir -p "$dir"
  new=$dir/.bin.$$
  rm -rf "$new"
  mkdir "$new"
  cp "$found" "$new/$bin_name"
  chmod 755 "$new/$bin_name"
  local reported
  if ! reported=$("$new/$bin_name" --version 2>&1); then
    rm -rf "$new"
    die "the $bin_name from $archive does not run on this runner: $reported"
  fi
  case "$reported" in
    *"$version"*) ;;
    *) warning "$archive was asked for as version $version, but its binary says: $reported" ;;
  esac
  rm -rf "${dir:?}/bin"
  mv "$new" "$dir/bin"
  if [ "$source" != "$cached" ]; then
    mv "$source" "$cached"
  fi

  local bin_dir bin_path
  bin_dir=$(native_path "$dir/bin")
  bin_path=$(native_path "$dir/bin/$bin_name")
  echo "installed $reported at $bin_path"
  if [ -n "${GITHUB_PATH:-}" ]; then
    printf '%s\n' "$bin_dir" >>"$GITHUB_PATH"
  else
    warning "GITHUB_PATH is not set: add $bin_dir to PATH yourself"
  fi
  if [ -n "${GITHUB_OUTPUT:-}" ]; then
    printf '%s=%s\n' version "$version" path "$bin_path" >>"$GITHUB_OUTPUT"
  fi
}

case "${1:-install}" in
  plan)
    plan
    print_plan
    ;;
  resolve)
    plan
    print_plan
    [ -z "${GITHUB_OUTPUT:-}" ] || print_plan >>"$GITHUB_OUTPUT"
    ;;
  install) install ;;
  *)
    echo "usage: install.sh [plan|resolve|install]" >&2
    exit 2
    ;;
esac
