-- Every session's login, next to pg_stat_activity: superusers, Entra administrators and
-- members of pg_read_all_stats (pgaadauth_session_rows() refuses others).
CREATE VIEW pgaadauth.sessions AS
    SELECT a.pid, a.usename, a.datname, a.client_addr, a.backend_start,
           s.method, s.object_id, s.tenant_id, s.upn, s.app_id, s.via_group, s.token_expires
    FROM pg_catalog.pg_stat_activity a
    JOIN pg_catalog.pgaadauth_session_rows() s ON s.pid = a.pid;
GRANT USAGE ON SCHEMA pgaadauth TO PUBLIC;
GRANT SELECT ON pgaadauth.sessions TO PUBLIC;
