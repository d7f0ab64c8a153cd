#!/usr/bin/env bash
# Installs what pgdr's integration tests (or, with --demo, its demo) need, and only what is missing, so a fresh
# machine and CI get the same services the developers test against. Silent when everything is present.
#
#   bash test/setup/ensure-deps.sh          PostgreSQL 15, zstd, age, pgBackRest, etcd, Patroni, MinIO, npm packages
#   bash test/setup/ensure-deps.sh --demo   PostgreSQL 15, zstd, npm packages
#
# Overrides: PGDR_PG_BINDIR (default /usr/lib/postgresql/15/bin), PGDR_MINIO_BIN (default
# $HOME/.cache/pgdr/bin/minio). The test harness reads the same two variables.
set -euo pipefail

demo=0
for arg in "$@"; do
  case "$arg" in
    --demo) demo=1 ;;
    -h | --help)
      sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "ensure-deps: unknown argument: $arg (accepted: --demo)" >&2
      exit 2
      ;;
  esac
done

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
pg_bindir=${PGDR_PG_BINDIR:-/usr/lib/postgresql/15/bin}
minio_bin=${PGDR_MINIO_BIN:-$HOME/.cache/pgdr/bin/minio}
# The Go proxy serves MinIO only by pseudo-version (it refuses the RELEASE.* tags), so this is the pin.
minio_module=github.com/minio/minio
minio_version=v0.0.0-20260212201848-7aac2a2c5b7c

say() { echo "ensure-deps: $*"; }
fail() {
  echo "ensure-deps: error: $1" >&2
  [ $# -lt 2 ] || echo "ensure-deps: hint: $2" >&2
  exit 1
}

# --- Debian packages ------------------------------------------------------------------------------------------
# Each package is checked by the file or command the tests use from it, so a package installed some other way
# (or a PGDR_PG_BINDIR build) counts as present.
missing_pkgs=()
add_missing() {
  local pkg
  for pkg in "${missing_pkgs[@]+"${missing_pkgs[@]}"}"; do [ "$pkg" = "$1" ] && return 0; done
  missing_pkgs+=("$1")
}
need_file() { [ -x "$2" ] || add_missing "$1"; }
need_command() { command -v "$2" >/dev/null 2>&1 || add_missing "$1"; }
need_deb() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed' || add_missing "$1"; }

need_file postgresql-15 "$pg_bindir/postgres"
need_file postgresql-15 "$pg_bindir/initdb"
need_file postgresql-15 "$pg_bindir/pg_ctl"
# pg_basebackup, pg_receivewal, pg_amcheck and psql come with the client package.
need_file postgresql-client-15 "$pg_bindir/pg_basebackup"
need_file postgresql-client-15 "$pg_bindir/pg_amcheck"
need_file postgresql-client-15 "$pg_bindir/psql"
need_command zstd zstd
# age and age-keygen: encryption at rest (pgdr runs the age CLI; the encryption tests make keys with age-keygen).
need_command age age
need_command age age-keygen
# openssl makes the TLS certificate of the MinIO test server (and is how most Debian machines already trust CAs).
[ "$demo" -eq 1 ] || need_command openssl openssl
# jq: the restore-by-hand runbook test reads manifests with it, as the runbook tells a reader to.
[ "$demo" -eq 1 ] || need_command jq jq
if [ "$demo" -eq 0 ]; then
  need_command pgbackrest pgbackrest
  need_command etcd-server etcd
  need_command etcd-client etcdctl
  need_command patroni patroni
  # Patroni's etcd support is an alternative dependency; name it so apt cannot pick another DCS client.
  need_deb python3-etcd
  # npm run bench times each tool with GNU time (user/system CPU, max RSS).
  need_file time /usr/bin/time
fi

if [ ${#missing_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    fail "missing Debian packages: ${missing_pkgs[*]}, and installing them needs root" \
      "run this script as root, or: sudo apt-get install --no-install-recommends ${missing_pkgs[*]}"
  fi
  command -v apt-get >/dev/null 2>&1 || fail "missing packages ${missing_pkgs[*]} and no apt-get on this machine" \
    "install them with this system's package manager (PostgreSQL 15 binaries in $pg_bindir)"
  apt_log=$(mktemp -t pgdr-apt.XXXXXX)
  trap 'rm -f "$apt_log"' EXIT
  if ! apt-get update >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    fail "apt-get update failed" "check the machine's access to the Debian package mirror"
  fi
  for pkg in "${missing_pkgs[@]}"; do say "installing $pkg (Debian package)"; done
  # The Debian postgresql and etcd packages may create and start a default server (PostgreSQL on 5432, etcd on
  # 2379); the tests never use those ports: every test server listens on a free port of its own.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_pkgs[@]}" \
    </dev/null >"$apt_log" 2>&1; then
    tail -n 30 "$apt_log" >&2
    fail "apt-get install ${missing_pkgs[*]} failed" \
      "postgresql-15 is in Debian 12 (bookworm); on other releases add the PostgreSQL apt repository first"
  fi
  rm -f "$apt_log"
  trap - EXIT
  # Verify by the same checks: a package that installs elsewhere than expected must not pass silently.
  recheck=("${missing_pkgs[@]}")
  missing_pkgs=()
  for pkg in "${recheck[@]}"; do
    case "$pkg" in
      postgresql-15) need_file "$pkg" "$pg_bindir/postgres" ;;
      postgresql-client-15) need_file "$pkg" "$pg_bindir/pg_basebackup" ;;
      etcd-server) need_command "$pkg" etcd ;;
      etcd-client) need_command "$pkg" etcdctl ;;
      python3-etcd) need_deb "$pkg" ;;
      *) need_command "$pkg" "$pkg" ;;
    esac
  done
  [ ${#missing_pkgs[@]} -eq 0 ] || fail "installed, but still not found: ${missing_pkgs[*]}" \
    "PostgreSQL binaries are expected in $pg_bindir (set PGDR_PG_BINDIR if they live elsewhere)"
fi

# PostgreSQL refuses to run as root; when the tests run as root they run its processes as this user.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  fail "the OS user 'postgres' does not exist" "reinstall postgresql-common: apt-get install --reinstall postgresql-common"
fi

# --- npm packages ---------------------------------------------------------------------------------------------
# npm writes node_modules/.package-lock.json on every install, so a lock file newer than it means a stale install.
cd "$repo_root"
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  command -v npm >/dev/null 2>&1 || fail "npm is not installed" "install Node.js 20 with npm"
  say "installing npm packages (npm ci)"
  npm_log=$(mktemp -t pgdr-npm.XXXXXX)
  if ! npm ci --no-audit --no-fund --loglevel=error </dev/null >"$npm_log" 2>&1; then
    tail -n 40 "$npm_log" >&2
    rm -f "$npm_log"
    fail "npm ci failed" "check access to the npm registry; package-lock.json must match package.json"
  fi
  rm -f "$npm_log"
fi

# --- MinIO ----------------------------------------------------------------------------------------------------
if [ "$demo" -eq 0 ] && [ ! -x "$minio_bin" ]; then
  go_cmd=$(command -v go 2>/dev/null || true)
  [ -n "$go_cmd" ] || { [ ! -x /usr/local/go/bin/go ] || go_cmd=/usr/local/go/bin/go; }
  [ -n "$go_cmd" ] || fail "MinIO is missing ($minio_bin) and Go is not installed to build it" \
    "install Go >= 1.24 (https://go.dev/doc/install), or put a MinIO server binary at $minio_bin (or set PGDR_MINIO_BIN)"
  minio_dir=$(dirname "$minio_bin")
  mkdir -p "$minio_dir"
  say "building MinIO $minio_version into $minio_bin (go install, ~5 minutes the first time)"
  # Build into a scratch GOBIN beside the target and move it in at the end, so an interrupted build never
  # leaves a half-written binary that the next run would take for installed.
  gobin=$(mktemp -d "$minio_dir/.go-install.XXXXXX")
  go_log="$gobin/build.log"
  if ! GOBIN="$gobin" "$go_cmd" install "$minio_module@$minio_version" </dev/null >"$go_log" 2>&1; then
    tail -n 30 "$go_log" >&2
    rm -rf "$gobin"
    fail "go install $minio_module@$minio_version failed" "check access to the Go module proxy and Go's version (go version)"
  fi
  mv -f "$gobin/minio" "$minio_bin"
  rm -rf "$gobin"
fi
