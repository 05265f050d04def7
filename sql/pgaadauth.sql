-- Hand-written parts of the pgaadauth extension script.

-- The role Entra administrators are members of (pgaadauth.admin_role), created if absent.
DO $$
DECLARE
    admin_role text := coalesce(nullif(current_setting('pgaadauth.admin_role', true), ''), 'azure_pg_admin');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = admin_role) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN', admin_role);
    END IF;
END
$$;

-- Roles mapped to Entra principals, as Azure Database for PostgreSQL lists them:
-- true lists administrators only, false lists all.
CREATE FUNCTION pg_catalog.pgaadauth_list_principals(isAdminValue boolean)
RETURNS TABLE(rolname name, principalType text, objectId text, tenantId text, isMfa integer, isAdmin integer)
LANGUAGE sql STABLE
AS $$
    SELECT r.rolname, f.principal_type, f.object_id, f.tenant_id, f.is_mfa, f.is_admin
    FROM pg_catalog.pg_shseclabel s
    JOIN pg_catalog.pg_roles r ON r.oid = s.objoid
    CROSS JOIN LATERAL pg_catalog.pgaadauth_label_fields(s.label) f
    WHERE s.classoid = 'pg_catalog.pg_authid'::pg_catalog.regclass
      AND s.provider = 'pgaadauth'
      AND (NOT $1 OR f.is_admin = 1)
    ORDER BY r.rolname
$$;

-- One row per cached signing key (and one per key source that has none yet): where it came
-- from, which issuer it serves, and how refreshing goes. Superusers and Entra admins.
CREATE FUNCTION pg_catalog.pgaadauth_jwks_status()
RETURNS TABLE(source text, issuer text, kid text, kty text, alg text,
              fetched_at timestamptz, next_refresh timestamptz, last_error text,
              refreshes bigint, failures bigint)
LANGUAGE sql VOLATILE
AS $$
    SELECT source, issuer, kid, kty, alg,
           pg_catalog.to_timestamp(fetched_at), pg_catalog.to_timestamp(next_refresh),
           last_error, refreshes, failures
    FROM pg_catalog.pgaadauth_jwks_rows()
$$;

-- What a login with this token to this role would decide, and why (see README, "Auditing and
-- troubleshooting"). The argument names and types are those of the SPEC.
CREATE FUNCTION pg_catalog.pgaadauth_validate_token(token text, role name DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql VOLATILE
AS $$ SELECT pg_catalog.pgaadauth_validate_token_for($1, $2::text) $$;
