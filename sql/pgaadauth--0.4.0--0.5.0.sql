-- pgaadauth 0.4.0 -> 0.5.0: pgaadauth_update_principal_with_oid (Azure's signature).
\echo Use "ALTER EXTENSION pgaadauth UPDATE" to load this file. \quit

CREATE FUNCTION "pgaadauth_update_principal_with_oid"(
	"rolename" TEXT,
	"objectid" TEXT,
	"objecttype" TEXT,
	"isadmin" bool,
	"ismfa" bool
) RETURNS TEXT
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_update_principal_with_oid_wrapper';
