-- pgaadauth 0.1.0 -> 0.2.0: token diagnosis and statistics.
\echo Use "ALTER EXTENSION pgaadauth UPDATE" to load this file. \quit

CREATE FUNCTION "pgaadauth_stats"() RETURNS TABLE (
	"counter" TEXT,
	"value" bigint
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_stats_wrapper';

CREATE FUNCTION "pgaadauth_validate_token_for"(
	"token" TEXT,
	"role" TEXT
) RETURNS jsonb
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_validate_token_for_wrapper';

CREATE FUNCTION pg_catalog.pgaadauth_validate_token(token text, role name DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
AS $$ SELECT pg_catalog.pgaadauth_validate_token_for($1, $2::text) $$;
