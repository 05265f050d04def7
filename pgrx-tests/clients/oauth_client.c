/*
 * oauth_client.c: a libpq 18 client that hands a bearer token to the server's
 * oauth method through the PQAUTHDATA_OAUTH_BEARER_TOKEN hook, as an
 * application would. The token comes from the environment (PGAADAUTH_TOKEN),
 * never from the command line.
 *
 *   oauth_client login CONNINFO
 *       Log in, print "current_user|system_user", exit 0; or print libpq's
 *       error and exit 1.
 *   oauth_client discover CONNINFO
 *       Log in without a token: print the discovery document URL and scope
 *       the server named, then fail as a client without a flow does.
 *   oauth_client bench N ROUNDS OAUTH_CONNINFO PASSWORD_CONNINFO
 *       ROUNDS rounds of N logins by each method, interleaved (the token as
 *       the password for the second), then one line per method with logins
 *       per second, and their ratio.
 *
 * Build: cc oauth_client.c -I$(pg_config --includedir) -L$(pg_config --libdir)
 *        -Wl,-rpath,$(pg_config --libdir) -lpq
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libpq-fe.h"

static const char *token;
static int	discover_only;

static int
bearer_token_hook(PGauthData type, PGconn *conn, void *data)
{
	PGoauthBearerRequest *request = data;

	if (type != PQAUTHDATA_OAUTH_BEARER_TOKEN)
		return PQdefaultAuthDataHook(type, conn, data);
	if (discover_only)
	{
		printf("openid-configuration=%s scope=%s\n",
			   request->openid_configuration ? request->openid_configuration : "",
			   request->scope ? request->scope : "");
		return -1;
	}
	/* libpq copies the token; it stays ours (static), so no cleanup callback. */
	request->token = (char *) token;
	return 1;
}

static PGconn *
connect_or_report(const char *conninfo)
{
	PGconn	   *conn = PQconnectdb(conninfo);

	if (PQstatus(conn) != CONNECTION_OK)
	{
		printf("connection failed: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

static int
login(const char *conninfo)
{
	PGconn	   *conn = connect_or_report(conninfo);
	PGresult   *res;

	if (conn == NULL)
		return 1;
	res = PQexec(conn, "SELECT current_user, coalesce(system_user, '')");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		printf("query failed: %s", PQerrorMessage(conn));
		return 1;
	}
	printf("%s|%s\n", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	PQclear(res);
	PQfinish(conn);
	return 0;
}

/* Log in and print the first row of `sql`, its fields separated by '|'. */
static int
query(const char *conninfo, const char *sql)
{
	PGconn	   *conn = connect_or_report(conninfo);
	PGresult   *res;

	if (conn == NULL)
		return 1;
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1)
	{
		printf("query failed: %s", PQerrorMessage(conn));
		return 1;
	}
	for (int i = 0; i < PQnfields(res); i++)
		printf("%s%s", i > 0 ? "|" : "", PQgetvalue(res, 0, i));
	printf("\n");
	PQclear(res);
	PQfinish(conn);
	return 0;
}

static double
seconds_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* N logins (connect, then close): the seconds they took, or -1 on a failure. */
static double
timed_logins(const char *conninfo, int n)
{
	double		start = seconds_now();

	for (int i = 0; i < n; i++)
	{
		PGconn	   *conn = connect_or_report(conninfo);

		if (conn == NULL)
			return -1;
		PQfinish(conn);
	}
	return seconds_now() - start;
}

static int
bench(int n, int rounds, const char *oauth_conninfo, const char *password_conninfo)
{
	char	   *with_password = malloc(strlen(password_conninfo) + strlen(token) + 16);
	double		oauth_s = 0,
				password_s = 0;

	sprintf(with_password, "%s password=%s", password_conninfo, token);
	for (int r = 0; r < rounds; r++)
	{
		double		a = timed_logins(oauth_conninfo, n);
		double		b = timed_logins(with_password, n);

		if (a < 0 || b < 0)
			return 1;
		oauth_s += a;
		password_s += b;
	}
	printf("oauth %.1f logins/s\n", n * rounds / oauth_s);
	printf("token_as_password %.1f logins/s\n", n * rounds / password_s);
	printf("ratio oauth/token_as_password %.3f\n", password_s / oauth_s);
	free(with_password);
	return 0;
}

int
main(int argc, char **argv)
{
	token = getenv("PGAADAUTH_TOKEN");
	if (token == NULL)
		token = "";
	PQsetAuthDataHook(bearer_token_hook);
	if (argc == 3 && strcmp(argv[1], "login") == 0)
		return login(argv[2]);
	if (argc == 3 && strcmp(argv[1], "discover") == 0)
	{
		discover_only = 1;
		return login(argv[2]) == 0 ? 2 : 1;
	}
	if (argc == 4 && strcmp(argv[1], "query") == 0)
		return query(argv[2], argv[3]);
	if (argc == 6 && strcmp(argv[1], "bench") == 0)
		return bench(atoi(argv[2]), atoi(argv[3]), argv[4], argv[5]);
	fprintf(stderr, "usage: oauth_client login CONNINFO | discover CONNINFO | query CONNINFO SQL | "
			"bench N ROUNDS OAUTH_CONNINFO PASSWORD_CONNINFO\n");
	return 2;
}
