#!/bin/sh
# psql with a fresh token: `az account get-access-token` returns its cached token while it
# is valid, and a new one before it expires. Connection settings come from PGHOST, PGPORT,
# PGUSER, PGDATABASE and PGSSLROOTCERT; the server's certificate and name are always checked.
set -e
PGPASSWORD=$(az account get-access-token --resource-type oss-rdbms --query accessToken --output tsv)
export PGPASSWORD
psql -X -c 'SELECT current_user, pg_backend_pid()' "sslmode=verify-full"
