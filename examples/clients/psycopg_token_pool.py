"""A psycopg 3 pool whose every new connection logs in with a fresh Microsoft Entra token.

Connection settings come from libpq's variables (PGHOST, PGPORT, PGUSER, PGDATABASE,
PGSSLROOTCERT); the server's certificate and name are always checked. The token comes from
azure-identity's DefaultAzureCredential: a managed identity on Azure, the Azure CLI's login
(`az login`) on a workstation.
"""
import contextlib
import sys
import time

from azure.identity import DefaultAzureCredential
from psycopg_pool import ConnectionPool

SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
credential = DefaultAzureCredential()


def connection_kwargs():
    # The pool calls this for each new connection (psycopg_pool 3.3 and later). get_token()
    # returns its cached token while it is valid, and a new one before it expires.
    return {"password": credential.get_token(SCOPE).token}


def show(label, conn):
    print(label, *conn.execute("SELECT current_user, pg_backend_pid()").fetchone())


def main(pause_seconds):
    with ConnectionPool(
        "sslmode=verify-full", kwargs=connection_kwargs, min_size=1, max_size=4, open=True
    ) as pool:
        with pool.connection() as conn:
            show("first", conn)
        # Tokens last an hour or more (a few seconds in the tests): the pool outlives them.
        time.sleep(pause_seconds)
        # Holding four connections at once makes the pool open new ones.
        with contextlib.ExitStack() as held:
            for conn in [held.enter_context(pool.connection()) for _ in range(4)]:
                show("later", conn)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
