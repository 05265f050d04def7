-- pgaadauth 0.3.0 -> 0.4.0: session identity and claims, token revocation.
\echo Use "ALTER EXTENSION pgaadauth UPDATE" to load this file. \quit

-- Token revocations (pgaadauth_revoke_tokens), read by every login through the session worker
-- in the database pgaadauth.database. Kept by pg_dump.
CREATE SCHEMA pgaadauth;
CREATE TABLE pgaadauth.revocations (
    object_id text PRIMARY KEY,
    revoked_before timestamptz NOT NULL,
    revoked_by name NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('pgaadauth.revocations', '');

CREATE FUNCTION "pgaadauth_revoke_tokens"(
	"object_id" TEXT
) RETURNS timestamp with time zone
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_revoke_tokens_wrapper';

CREATE FUNCTION "pgaadauth_lift_revocation"(
	"object_id" TEXT
) RETURNS bool
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_lift_revocation_wrapper';

CREATE FUNCTION "pgaadauth_list_revocations"() RETURNS TABLE (
	"object_id" TEXT,
	"revoked_before" timestamp with time zone,
	"revoked_by" TEXT,
	"enforced" bool
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_list_revocations_wrapper';

CREATE FUNCTION "pgaadauth_session"() RETURNS TABLE (
	"method" TEXT,
	"object_id" TEXT,
	"tenant_id" TEXT,
	"upn" TEXT,
	"app_id" TEXT,
	"via_group" TEXT,
	"token_expires" timestamp with time zone
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_session_wrapper';

CREATE FUNCTION "pgaadauth_session_claims"() RETURNS jsonb
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_session_claims_wrapper';

CREATE FUNCTION "pgaadauth_session_rows"() RETURNS TABLE (
	"pid" INT,
	"method" TEXT,
	"object_id" TEXT,
	"tenant_id" TEXT,
	"upn" TEXT,
	"app_id" TEXT,
	"via_group" TEXT,
	"token_expires" timestamp with time zone
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_session_rows_wrapper';

-- Every session's login, next to pg_stat_activity: superusers, Entra administrators and
-- members of pg_read_all_stats (pgaadauth_session_rows() refuses others).
CREATE VIEW pgaadauth.sessions AS
    SELECT a.pid, a.usename, a.datname, a.client_addr, a.backend_start,
           s.method, s.object_id, s.tenant_id, s.upn, s.app_id, s.via_group, s.token_expires
    FROM pg_catalog.pg_stat_activity a
    JOIN pg_catalog.pgaadauth_session_rows() s ON s.pid = a.pid;
GRANT USAGE ON SCHEMA pgaadauth TO PUBLIC;
GRANT SELECT ON pgaadauth.sessions TO PUBLIC;
