-- Password logins on pgaadauth's lines, per role (pgaadauth_password_logins()): the session
-- worker adds those of the last second in the database pgaadauth.database, and reads the
-- table back after a restart. Kept by pg_dump. Delete rows to start a role's count again.
CREATE TABLE pgaadauth.password_logins (
    role_name name PRIMARY KEY,
    logins bigint NOT NULL CHECK (logins > 0),
    first_login timestamptz NOT NULL,
    last_login timestamptz NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('pgaadauth.password_logins', '');
