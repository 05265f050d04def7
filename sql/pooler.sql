-- Only the roles of connection poolers, granted EXECUTE by an administrator, may ask.
REVOKE ALL ON FUNCTION pg_catalog.pgaadauth_pooler_login(text, text, text) FROM PUBLIC;
