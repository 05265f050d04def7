-- pgaadauth 0.6.0 -> 0.7.0: pgaadauth_ensure_principal_with_oid (re-runnable principals), and
-- password logins per role (pgaadauth_password_logins(), kept in pgaadauth.password_logins).
\echo Use "ALTER EXTENSION pgaadauth UPDATE" to load this file. \quit

CREATE FUNCTION "pgaadauth_ensure_principal_with_oid"(
	"rolename" TEXT,
	"objectid" TEXT,
	"objecttype" TEXT,
	"isadmin" bool,
	"ismfa" bool
) RETURNS TEXT
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_ensure_principal_with_oid_wrapper';

CREATE TABLE pgaadauth.password_logins (
    role_name name PRIMARY KEY,
    logins bigint NOT NULL CHECK (logins > 0),
    first_login timestamptz NOT NULL CHECK (pg_catalog.isfinite(first_login)),
    last_login timestamptz NOT NULL CHECK (pg_catalog.isfinite(last_login))
);

CREATE FUNCTION "pgaadauth_password_logins"() RETURNS TABLE (
	"role_name" TEXT,
	"logins" bigint,
	"first_login" timestamp with time zone,
	"last_login" timestamp with time zone
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_password_logins_wrapper';
