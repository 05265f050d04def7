-- pgaadauth 0.4.0 -> 0.5.0: pgaadauth_update_principal_with_oid (Azure's signature), Entra group sync.
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

-- Entra group sync.
CREATE FUNCTION "pgaadauth_sync_roles_for_group_members"() RETURNS TABLE (
	"role_name" TEXT,
	"object_id" TEXT,
	"group_role" TEXT,
	"action" TEXT,
	"detail" TEXT
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_sync_roles_for_group_members_wrapper';

CREATE FUNCTION "pgaadauth_list_synced_roles"() RETURNS TABLE (
	"rolname" TEXT,
	"objectid" TEXT,
	"objecttype" TEXT,
	"canlogin" bool,
	"ismfa" bool,
	"groups" TEXT[]
)
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'pgaadauth_list_synced_roles_wrapper';
