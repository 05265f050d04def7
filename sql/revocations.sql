-- Token revocations (pgaadauth_revoke_tokens), read by every login through the session worker
-- in the database pgaadauth.database. Kept by pg_dump.
CREATE SCHEMA pgaadauth;
CREATE TABLE pgaadauth.revocations (
    object_id text PRIMARY KEY,
    revoked_before timestamptz NOT NULL,
    revoked_by name NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('pgaadauth.revocations', '');
