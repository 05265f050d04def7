-- pgaadauth 0.2.0 -> 0.3.0: logins checked for PgBouncer (its PAM module, pam_pgaadauth.so).
\echo Use "ALTER EXTENSION pgaadauth UPDATE" to load this file. \quit

CREATE FUNCTION "pgaadauth_pooler_login"(
	"role" TEXT,
	"password" TEXT,
	"client" TEXT
) RETURNS TEXT
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_pooler_login_wrapper';

-- Only the roles of connection poolers, granted EXECUTE by an administrator, may ask.
REVOKE ALL ON FUNCTION pg_catalog.pgaadauth_pooler_login(text, text, text) FROM PUBLIC;
