-- Password logins on pgaadauth's lines, per role (pgaadauth_password_logins()): the session
-- worker adds those of the last second in the database pgaadauth.database, and reads the
-- table back after a restart. This server's logins: not kept by pg_dump. Delete rows to start
-- a role's count again.
CREATE TABLE pgaadauth.password_logins (
    role_name name PRIMARY KEY,
    logins bigint NOT NULL CHECK (logins > 0),
    first_login timestamptz NOT NULL CHECK (pg_catalog.isfinite(first_login)),
    last_login timestamptz NOT NULL CHECK (pg_catalog.isfinite(last_login))
);
