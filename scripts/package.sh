#!/usr/bin/env bash
# Builds release packages of pgaadauth into target/packages/, for each PostgreSQL major of
# $PG_VERSIONS (default: every supported one, scripts/pg.sh):
#   pgaadauth-postgresql-NN_<version>-<rev>_<arch>.deb Debian's layout (/usr/lib/postgresql/NN/lib,
#                                                 /usr/share/postgresql/NN/extension), depends
#                                                 on postgresql-NN; <rev> is the package
#                                                 build, $PACKAGE_REVISION (default 1)
#   pgaadauth-postgresql-NN-<version>.tar.gz      lib/ and extension/, for other layouts: copy
#                                                 them into `pg_config --pkglibdir` and
#                                                 `pg_config --sharedir`/extension
# and for 18 and later (PostgreSQL's extension_control_path):
#   pgaadauth-postgresql-NN-<version>.oci.tar     a CloudNativePG image volume extension: an OCI
#                                                 image (FROM scratch: lib/, share/extension/,
#                                                 licenses/pgaadauth/LICENSE) in an OCI archive;
#                                                 the same files give the same digest
#                                                 (docs/kubernetes.md)
# and once, whatever the majors:
#   libpam-pgaadauth_<version>-<rev>_<arch>.deb   the PAM module for PgBouncer, pam_pgaadauth.so,
#                                                 in the system's PAM module directory
#   pgaadauth-proxy_<version>-<rev>_<arch>.deb    the local token proxy, /usr/bin/pgaadauth-proxy
#                                                 (docs/proxy.md)
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
# Where the source is published, for the image's org.opencontainers.image.source label:
# $PGAADAUTH_SOURCE_URL, else the clone's origin when that is a URL; else no such label (the
# revision label names the commit either way).
source=${PGAADAUTH_SOURCE_URL:-$(git config --get remote.origin.url 2>/dev/null || true)}
[[ "$source" =~ ^(https?|git|ssh):// ]] || source=
# Never a credential in a published label: no user or token before the host.
source=$(sed -E 's#^([a-z+]+://)[^@/]*@#\1#' <<<"$source")
# The commit, marked when the tree has changes the commit does not hold.
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || commit="$commit-dirty"

arch=$(dpkg --print-architecture)
# The image's architecture in OCI's words (Go's), where Debian's differ.
case "$arch" in
armhf) oci_arch=arm ;;
i386) oci_arch=386 ;;
ppc64el) oci_arch=ppc64le ;;
*) oci_arch=$arch ;;
esac

# The Depends of a package holding library $1: the packages of the shared libraries it links,
# at the versions its symbols need (dpkg-shlibdeps, which wants a debian/control to read).
shlibs_depends() {
    local dir library out
    dir=$(mktemp -d)
    library=$(realpath "$1")
    mkdir "$dir/debian"
    printf 'Source: pgaadauth\n\nPackage: pgaadauth\nArchitecture: any\n' > "$dir/debian/control"
    out=$(cd "$dir" && dpkg-shlibdeps -O "$library") || { rm -rf "$dir"; return 1; }
    rm -rf "$dir"
    out=$(sed -n 's/^shlibs:Depends=//p' <<<"$out")
    [ -n "$out" ] || { echo "package: dpkg-shlibdeps found no dependencies of $1" >&2; return 1; }
    echo "$out"
}

# Write DEBIAN/control into package root $1: package $2, section $3, dependencies $4 (besides
# those of the shared libraries and programs), summary $5, and the long description on standard
# input.
write_control() {
    local depends library found
    depends=$4
    for library in $(find "$1" -type f \( -name '*.so' -o -path "$1/usr/bin/*" \)); do
        found=$(shlibs_depends "$library")
        depends="$depends, $found"
    done
    {
        echo "Package: $2"
        echo "Version: $version-$revision"
        echo "Architecture: $arch"
        echo "Maintainer: $maintainer"
        echo "Installed-Size: $(du -sk --exclude=DEBIAN "$1" | cut -f1)"
        echo "Depends: ${depends#, }"
        echo "Section: $3"
        echo "Priority: optional"
        echo "Description: $5"
        sed 's/^/ /'
    } > "$1/DEBIAN/control"
}

# The PAM module for PgBouncer, in the directory of the system's own PAM modules.
cargo build --release -p pam_pgaadauth
pam_dir=$(pam_module_dir)
root=target/package-stage/libpam
rm -rf "$root"
install -d "$root/DEBIAN" "$root$pam_dir" "$root/usr/share/doc/libpam-pgaadauth/examples" \
    "$root/usr/share/libpam-pgaadauth/pam.d"
install -m 0644 target/release/libpam_pgaadauth.so "$root$pam_dir/pam_pgaadauth.so"
# PgBouncer's own PAM view (docs/pgbouncer.md): its `other`, and the examples.
install -m 0644 examples/pgbouncer/pam.d/other "$root/usr/share/libpam-pgaadauth/pam.d/other"
install -m 0644 examples/pgbouncer/pam-view.conf examples/pgbouncer/pam.d/pgbouncer \
    "$root/usr/share/doc/libpam-pgaadauth/examples/"
strip --strip-unneeded "$root$pam_dir/pam_pgaadauth.so"
install -m 0644 LICENSE "$root/usr/share/doc/libpam-pgaadauth/copyright"
write_control "$root" libpam-pgaadauth admin "" \
    "PAM module for PgBouncer: token logins checked by a pgaadauth server" <<DESCRIPTION
pam_pgaadauth.so lets PgBouncer (auth_type = pam) have a PostgreSQL server with
pgaadauth decide every client login: Microsoft Entra ID or OpenID Connect tokens,
and passwords, through pgaadauth_pooler_login.
DESCRIPTION
dpkg-deb --root-owner-group --build "$root" "$out/libpam-pgaadauth_${version}-${revision}_${arch}.deb" >/dev/null
echo "package: $out/libpam-pgaadauth_${version}-${revision}_${arch}.deb"

# The local token proxy, for clients that cannot fetch tokens.
cargo build --release -p pgaadauth-proxy
root=target/package-stage/proxy
rm -rf "$root"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/doc/pgaadauth-proxy/examples"
install -m 0755 target/release/pgaadauth-proxy "$root/usr/bin/pgaadauth-proxy"
strip --strip-unneeded "$root/usr/bin/pgaadauth-proxy"
install -m 0644 LICENSE "$root/usr/share/doc/pgaadauth-proxy/copyright"
install -m 0644 examples/proxy/pgaadauth-proxy.service "$root/usr/share/doc/pgaadauth-proxy/examples/"
write_control "$root" pgaadauth-proxy database "" \
    "local proxy logging PostgreSQL clients in with Microsoft Entra ID tokens" <<DESCRIPTION
pgaadauth-proxy accepts PostgreSQL connections without a password and logs each
one in to the real server, over verified TLS, with a fresh Microsoft Entra ID
(or OpenID Connect) token: from the environment, workload identity, a managed
identity, the Azure CLI, client credentials or a command. For clients that
cannot fetch tokens themselves (GUI and BI tools, old applications).
DESCRIPTION
dpkg-deb --root-owner-group --build "$root" "$out/pgaadauth-proxy_${version}-${revision}_${arch}.deb" >/dev/null
echo "package: $out/pgaadauth-proxy_${version}-${revision}_${arch}.deb"

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
    # The library stripped once, for both.
    install -m 0644 "$pkglib/pgaadauth.so" "$staged/pgaadauth.so"
    strip --strip-unneeded "$staged/pgaadauth.so"
    install -m 0644 "$staged/pgaadauth.so" "$root/usr/lib/postgresql/$v/lib/"
    install -m 0644 "$extdir"/pgaadauth* "$root/usr/share/postgresql/$v/extension/"
    install -m 0644 LICENSE "$root/usr/share/doc/pgaadauth-postgresql-$v/copyright"
    write_control "$root" "pgaadauth-postgresql-$v" database "postgresql-$v" \
        "Microsoft Entra ID and OpenID Connect token login for PostgreSQL $v" <<DESCRIPTION
pgaadauth verifies signed JWT access tokens sent as the password, in the server,
against signing keys cached in shared memory, and maps the token's directory
object id to a role through SECURITY LABEL FOR "pgaadauth". Add pgaadauth to
shared_preload_libraries, restart, then CREATE EXTENSION pgaadauth.
DESCRIPTION
    dpkg-deb --root-owner-group --build "$root" "$out/pgaadauth-postgresql-${v}_${version}-${revision}_${arch}.deb" >/dev/null
    # A tarball for other layouts.
    tree=target/package-stage/tar$v/pgaadauth-postgresql-$v-$version
    rm -rf "$(dirname "$tree")"
    install -d "$tree/lib" "$tree/extension"
    install -m 0644 "$staged/pgaadauth.so" "$tree/lib/"
    install -m 0644 "$extdir"/pgaadauth* "$tree/extension/"
    install -m 0644 LICENSE "$tree/"
    cat > "$tree/INSTALL" <<INSTALL
pgaadauth $version for PostgreSQL $v

  cp lib/pgaadauth.so "\$(pg_config --pkglibdir)/"
  cp extension/* "\$(pg_config --sharedir)/extension/"

Then add pgaadauth to shared_preload_libraries, restart, and CREATE EXTENSION pgaadauth.
INSTALL
    tar -C "$(dirname "$tree")" -czf "$out/pgaadauth-postgresql-$v-$version.tar.gz" "$(basename "$tree")"
    echo "package: $out/pgaadauth-postgresql-${v}_${version}-${revision}_${arch}.deb, $out/pgaadauth-postgresql-$v-$version.tar.gz"
    # The CloudNativePG image volume extension (18 and later): the same files, the image's time
    # that of the commit, so that the same commit gives the same digest.
    if [ "$v" -ge 18 ]; then
        image=target/package-stage/image$v
        rm -rf "$image"
        install -d "$image/lib" "$image/share/extension" "$image/licenses/pgaadauth"
        install -m 0644 "$staged/pgaadauth.so" "$image/lib/"
        install -m 0644 "$extdir"/pgaadauth* "$image/share/extension/"
        install -m 0644 LICENSE "$image/licenses/pgaadauth/"
        digest=$(python3 scripts/oci_image.py --root "$image" \
            --out "$out/pgaadauth-postgresql-$v-$version.oci.tar" \
            --created "$(git log -1 --format=%ct 2>/dev/null || echo 0)" \
            --arch "$oci_arch" --ref "$v-$version" \
            --label "org.opencontainers.image.title=pgaadauth" \
            --label "org.opencontainers.image.description=pgaadauth $version for PostgreSQL $v: Microsoft Entra ID and OpenID Connect token login (a CloudNativePG image volume extension)" \
            --label "org.opencontainers.image.version=$version" \
            --label "org.opencontainers.image.revision=$commit" \
            ${source:+--label "org.opencontainers.image.source=$source"} \
            --label "org.opencontainers.image.licenses=PostgreSQL" \
            --label "io.pgaadauth.postgresql.major=$v")
        echo "package: $out/pgaadauth-postgresql-$v-$version.oci.tar ($digest)"
    fi
done
