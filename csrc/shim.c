/*
 * shim.c — bridges the few PostgreSQL server APIs that pgrx does not bind:
 * the ClientAuthentication hook, fields of Port, the authentication-request
 * protocol calls, the SCRAM exchange, and ereport with a log-only detail.
 *
 * Every function here is a direct call-through; all decisions are made in Rust.
 */
#include "postgres.h"

#include "libpq/auth.h"
#include "libpq/crypt.h"
#include "libpq/hba.h"
#include "libpq/libpq.h"
#include "libpq/libpq-be.h"
#if PG_VERSION_NUM >= 140000
#include "libpq/sasl.h"
#include "libpq/scram.h"
#endif

static ClientAuthentication_hook_type prev_client_auth_hook = NULL;

void
pgaadauth_install_auth_hook(ClientAuthentication_hook_type hook)
{
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = hook;
}

void
pgaadauth_call_prev_auth_hook(Port *port, int status)
{
	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);
}

bool
pgaadauth_port_is_trust(Port *port)
{
	return port->hba != NULL && port->hba->auth_method == uaTrust;
}

const char *
pgaadauth_port_user(Port *port)
{
	return port->user_name;
}

const char *
pgaadauth_port_remote_host(Port *port)
{
	return port->remote_host;
}

int
pgaadauth_port_hba_line(Port *port)
{
	return port->hba != NULL ? port->hba->linenumber : 0;
}

void
pgaadauth_send_auth_request(Port *port, int areq, const char *extradata, int extralen)
{
	sendAuthRequest(port, (AuthRequest) areq, extradata, extralen);
}

void
pgaadauth_pq_startmsgread(void)
{
	pq_startmsgread();
}

int
pgaadauth_pq_getbyte(void)
{
	return pq_getbyte();
}

int
pgaadauth_pq_getmessage(StringInfo buf, int maxlen)
{
	return pq_getmessage(buf, maxlen);
}

/* The SCRAM-SHA-256 exchange; a NULL shadow_pass runs PostgreSQL's mock exchange. */
int
pgaadauth_check_scram(Port *port, char *shadow_pass, const char **logdetail)
{
#if PG_VERSION_NUM >= 140000
	return CheckSASLAuth(&pg_be_scram_mech, port, shadow_pass, logdetail);
#else
	*logdetail = "SCRAM authentication through pgaadauth needs PostgreSQL 14 or later.";
	return STATUS_ERROR;
#endif
}

/* FATAL 28P01 "password authentication failed", with a detail for the server log only. */
void
pgaadauth_auth_failed(Port *port, const char *logdetail)
{
	ereport(FATAL,
			(errcode(ERRCODE_INVALID_PASSWORD),
			 errmsg("password authentication failed for user \"%s\"", port->user_name),
			 logdetail ? errdetail_log("%s", logdetail) : 0));
}

