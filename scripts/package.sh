#!/usr/bin/env bash
# Builds release packages of pgaadauth into target/packages/, for each PostgreSQL major of
# $PG_VERSIONS (default: every supported one, scripts/pg.sh):
#   pgaadauth-postgresql-NN_<version>-<rev>_amd64.deb  Debian's layout (/usr/lib/postgresql/NN/lib,
#                                                 /usr/share/postgresql/NN/extension), depends
#                                                 on postgresql-NN; <rev> is the package
#                                                 build, $PACKAGE_REVISION (default 1)
#   pgaadauth-postgresql-NN-<version>.tar.gz      lib/ and extension/, for other layouts: copy
#                                                 them into `pg_config --pkglibdir` and
#                                                 `pg_config --sharedir`/extension
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/pg.sh
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
revision=${PACKAGE_REVISION:-1}
# The maintainer named in the packages: the author of the commit they are built from.
maintainer=$(git log -1 --format='%an <%ae>' 2>/dev/null || echo 'pgaadauth developers <root@localhost>')
out=target/packages
mkdir -p "$out"
for v in $PG_VERSIONS; do
    pg_config=$(pg_config_for "$v")
    staged=target/package-stage/pg$v
    rm -rf "$staged"
    cargo pgrx package --pg-config "$pg_config" --no-default-features --features "pg$v" \
        --out-dir "$staged"
    # cargo pgrx package mirrors pg_config's own directories under $staged.
    pkglib="$staged$("$pg_config" --pkglibdir)"
    extdir="$staged$("$pg_config" --sharedir)/extension"
    [ -f "$pkglib/pgaadauth.so" ] || { echo "package: no pgaadauth.so under $pkglib" >&2; exit 1; }
    # Debian's layout.
    root=target/package-stage/deb$v
    rm -rf "$root"
    install -d "$root/DEBIAN" "$root/usr/lib/postgresql/$v/lib" \
        "$root/usr/share/postgresql/$v/extension" "$root/usr/share/doc/pgaadauth-postgresql-$v"
    install -m 0644 "$pkglib/pgaadauth.so" "$root/usr/lib/postgresql/$v/lib/"
    strip --strip-unneeded "$root/usr/lib/postgresql/$v/lib/pgaadauth.so"
    install -m 0644 "$extdir"/pgaadauth* "$root/usr/share/postgresql/$v/extension/"
    install -m 0644 LICENSE "$root/usr/share/doc/pgaadauth-postgresql-$v/copyright"
    cat > "$root/DEBIAN/control" <<CONTROL
Package: pgaadauth-postgresql-$v
Version: $version-$revision
Architecture: amd64
Maintainer: $maintainer
Depends: postgresql-$v, libc6
Section: database
Priority: optional
Description: Microsoft Entra ID and OpenID Connect token login for PostgreSQL $v
 pgaadauth verifies signed JWT access tokens sent as the password, in the server,
 against signing keys cached in shared memory, and maps the token's directory
 object id to a role through SECURITY LABEL FOR "pgaadauth". Add pgaadauth to
 shared_preload_libraries, restart, then CREATE EXTENSION pgaadauth.
CONTROL
    dpkg-deb --root-owner-group --build "$root" "$out/pgaadauth-postgresql-${v}_${version}-${revision}_amd64.deb" >/dev/null
    # A tarball for other layouts.
    tree=target/package-stage/tar$v/pgaadauth-postgresql-$v-$version
    rm -rf "$(dirname "$tree")"
    install -d "$tree/lib" "$tree/extension"
    install -m 0644 "$pkglib/pgaadauth.so" "$tree/lib/"
    install -m 0644 "$extdir"/pgaadauth* "$tree/extension/"
    install -m 0644 LICENSE "$tree/"
    cat > "$tree/INSTALL" <<INSTALL
pgaadauth $version for PostgreSQL $v

  cp lib/pgaadauth.so "\$(pg_config --pkglibdir)/"
  cp extension/* "\$(pg_config --sharedir)/extension/"

Then add pgaadauth to shared_preload_libraries, restart, and CREATE EXTENSION pgaadauth.
INSTALL
    tar -C "$(dirname "$tree")" -czf "$out/pgaadauth-postgresql-$v-$version.tar.gz" "$(basename "$tree")"
    echo "package: $out/pgaadauth-postgresql-${v}_${version}-${revision}_amd64.deb, $out/pgaadauth-postgresql-$v-$version.tar.gz"
done
