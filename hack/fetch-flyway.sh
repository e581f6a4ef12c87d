#!/usr/bin/env bash
# Fetches Flyway's command line (OSS, PostgreSQL only) from Maven Central into the cache, keyed by
# a hash of this script (the pinned versions and checksums), so a warm cache downloads nothing.
# Each jar is checked against the SHA-256 pinned below (taken once and cross-checked with the .sha1
# Maven Central publishes beside it). Prints the path of a `flyway` launcher on stdout; it needs a
# Java 17+ runtime (`make flyway` installs Debian's openjdk-17-jre-headless where java is missing).
set -euo pipefail

# Flyway's own command-line distribution (a tar.gz with every database's driver, ~250 MB of jars)
# is not served here; these are the jars `flyway migrate/info/validate/repair` needs for PostgreSQL.
# flyway-reports is not optional: without it a failed migration exits 0 and prints no SQL error.
ARTIFACTS=(
  "org/flywaydb/flyway-commandline/11.14.1/flyway-commandline-11.14.1.jar 3a55ca2d710c180724ea5d99238fd5c9c4815b44f573590b9b973de13e3d1616"
  "org/flywaydb/flyway-core/11.14.1/flyway-core-11.14.1.jar 45148edbcb55016418ff1ef7ecca3331b55f5216b3af4bd2db40063904db3715"
  "org/flywaydb/flyway-reports/11.14.1/flyway-reports-11.14.1.jar b510a30375895693f8209fbce76063e5c2851376a576e47d76d0374853171cf0"
  "org/flywaydb/flyway-database-postgresql/11.14.1/flyway-database-postgresql-11.14.1.jar d7142273706f225e6890ff971f0c8ccc4e7fe253ab6ab9f20556b155c68bca8a"
  "org/postgresql/postgresql/42.7.8/postgresql-42.7.8.jar 2a32a9dcbc42d67a50ad3a0de5efd102c8d2be46720045f2cbd6689f160ab7c7"
  "com/fasterxml/jackson/core/jackson-databind/2.19.1/jackson-databind-2.19.1.jar 0bc539401d52c6b14e668947c851dcc49f78a4ada3d1fc8e8f71440613fc26ce"
  "com/fasterxml/jackson/core/jackson-core/2.19.1/jackson-core-2.19.1.jar c46369e1a21810100adbc92503b62f15a9ef1640427932f4fe1588ef7ce7e480"
  "com/fasterxml/jackson/core/jackson-annotations/2.19.1/jackson-annotations-2.19.1.jar 5a3cd7211ab26b36213f43a2a94bc052a3385af780c5c135329741b2d79a9730"
  "com/fasterxml/jackson/dataformat/jackson-dataformat-toml/2.19.1/jackson-dataformat-toml-2.19.1.jar bc4bdf52c92beae62168fdb43aad7bc9f47b759cb1fbffb09e5c6c452665fa62"
)
MAVEN="${LOCKGATE_MAVEN_URL:-https://repo1.maven.org/maven2}"

cache="${LOCKGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lockgate}"
key="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
out="$cache/flyway/$key"
if [[ -x "$out/flyway" ]]; then echo "$out/flyway"; exit 0; fi

echo "[flyway] fetching Flyway 11 jars into $out" >&2
rm -rf "$out.tmp" && mkdir -p "$out.tmp/lib"
for entry in "${ARTIFACTS[@]}"; do
  read -r path sum <<<"$entry"
  jar="$out.tmp/lib/$(basename "$path")"
  curl -fsSL --retry 3 -o "$jar" "$MAVEN/$path"
  echo "$sum  $jar" | sha256sum --check --quiet - >&2 || { echo "[flyway] checksum mismatch: $path" >&2; exit 1; }
done
# -skipCheckForUpdate: otherwise every run first asks the internet for a newer Flyway (seconds).
cat >"$out.tmp/flyway" <<'EOF'
#!/bin/sh
here="$(cd "$(dirname "$0")" && pwd)"
exec "${JAVA_HOME:+$JAVA_HOME/bin/}java" ${JAVA_OPTS:-} -cp "$here/lib/*" org.flywaydb.commandline.Main -skipCheckForUpdate "$@"
EOF
chmod +x "$out.tmp/flyway"
# Assembled beside its place and moved in, so a failed fetch never looks warm.
rm -rf "$out" && mv "$out.tmp" "$out"
echo "$out/flyway"
