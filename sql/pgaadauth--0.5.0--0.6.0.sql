-- pgaadauth 0.5.0 -> 0.6.0: pgaadauth_pooler_login returns an integer (1 accepted, 0 refused,
-- the reason in an INFO message), so that the PAM module's fast-path call has a result libpq
-- checks the length of. The new function has a new C symbol: until this update runs, the old
-- one answers with an error. The EXECUTE grants of the old function pass to the new one, with
-- their grant options.
\echo Use "ALTER EXTENSION pgaadauth UPDATE" to load this file. \quit

DO $$
DECLARE
	grantees text[] := ARRAY(
		SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
		            ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END
		       || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid = 'pg_catalog.pgaadauth_pooler_login(text,text,text)'::pg_catalog.regprocedure
		  AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner);
	grantee text;
BEGIN
	DROP FUNCTION pg_catalog.pgaadauth_pooler_login(text, text, text);
	CREATE FUNCTION pg_catalog."pgaadauth_pooler_login"(
		"role" TEXT,
		"password" TEXT,
		"client" TEXT
	) RETURNS INT
	STRICT VOLATILE PARALLEL UNSAFE
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'pooler_login_checked_wrapper';
	REVOKE ALL ON FUNCTION pg_catalog.pgaadauth_pooler_login(text, text, text) FROM PUBLIC;
	FOREACH grantee IN ARRAY grantees LOOP
		EXECUTE pg_catalog.format(
			'GRANT EXECUTE ON FUNCTION pg_catalog.pgaadauth_pooler_login(text, text, text) TO %s',
			grantee);
	END LOOP;
END
$$;
