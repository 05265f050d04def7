/*
 * shim.c — bridges the few PostgreSQL server APIs that pgrx does not bind:
 * the ClientAuthentication hook, fields of Port, the authentication-request
 * protocol calls, the SCRAM exchange, the authenticated identity, and ereport
 * with a log-only detail.
 *
 * Every function here is a call-through; all decisions are made in Rust.
 * PostgreSQL 14 keeps sendAuthRequest and its SASL loop static: there the
 * request is framed here and the loop runs in Rust (src/sasl.rs).
 * PostgreSQL 18: the OAuth validator's callback table and the oauth options
 * of the pg_hba.conf line (src/oauth.rs).
 */
#include "postgres.h"

#include "libpq/auth.h"
#include "libpq/crypt.h"
#include "common/ip.h"
#include "libpq/hba.h"
#include "libpq/libpq.h"
#include "libpq/libpq-be.h"
#include "libpq/pqformat.h"
#include "libpq/scram.h"
#include "miscadmin.h"
#if PG_VERSION_NUM >= 150000
#include "libpq/sasl.h"
#endif
#if PG_VERSION_NUM >= 180000
#include "libpq/oauth.h"
#endif
#include "utils/memutils.h"
#if PG_VERSION_NUM < 180000
#include "postmaster/postmaster.h"
#include "utils/guc.h"
#endif

/*
 * Port's layout differs between majors: a shim compiled against other headers
 * than the Rust bindings (feature pgNN) could misread the hba method.
 */
#if !defined(PGAADAUTH_PG_MAJOR) || PG_VERSION_NUM / 10000 != PGAADAUTH_PG_MAJOR
#error "csrc/shim.c is compiled against the headers of another PostgreSQL major than the pgNN feature"
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

bool
pgaadauth_port_uses_ssl(Port *port)
{
	return port->ssl_in_use;
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

/*
 * The client's address as numbers (remote_host may be a name, with log_hostname): 1 when
 * written to buf, 0 for a Unix-domain socket, -1 when it cannot be told.
 */
int
pgaadauth_port_remote_ip(Port *port, char *buf, int len)
{
	if (port->raddr.addr.ss_family == AF_UNIX)
		return 0;
	if (pg_getnameinfo_all(&port->raddr.addr, port->raddr.salen, buf, len,
						   NULL, 0, NI_NUMERICHOST) != 0)
		return -1;
	return 1;
}

const char *
pgaadauth_port_hba_method(Port *port)
{
	return port->hba != NULL ? hba_authname(port->hba->auth_method) : "";
}

int
pgaadauth_port_hba_line(Port *port)
{
	return port->hba != NULL ? port->hba->linenumber : 0;
}

void
pgaadauth_send_auth_request(Port *port, int areq, const char *extradata, int extralen)
{
#if PG_VERSION_NUM >= 150000
	sendAuthRequest(port, (AuthRequest) areq, extradata, extralen);
#else
	/* The AuthenticationRequest message ('R'), sent at once: the client answers it. */
	StringInfoData msg;

	pq_beginmessage(&msg, 'R');
	pq_sendint32(&msg, (int32) areq);
	if (extralen > 0)
		pq_sendbytes(&msg, extradata, extralen);
	pq_endmessage(&msg);
	pq_flush();
	CHECK_FOR_INTERRUPTS();
#endif
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

#if PG_VERSION_NUM >= 150000
/* The SCRAM-SHA-256 exchange; a NULL shadow_pass runs PostgreSQL's mock exchange. */
int
pgaadauth_check_scram(Port *port, char *shadow_pass, const char **logdetail)
{
	return CheckSASLAuth(&pg_be_scram_mech, port, shadow_pass, logdetail);
}
#else
/* PostgreSQL 14: the SCRAM mechanism's steps, for the exchange in src/sasl.rs. */
void
pgaadauth_scram_mechanisms(Port *port, StringInfo buf)
{
	pg_be_scram_get_mechanisms(port, buf);
}

void *
pgaadauth_scram_init(Port *port, const char *mech, const char *shadow_pass)
{
	return pg_be_scram_init(port, mech, shadow_pass);
}

int
pgaadauth_scram_exchange(void *state, const char *input, int inputlen,
						 char **output, int *outputlen, const char **logdetail)
{
	return pg_be_scram_exchange(state, input, inputlen, output, outputlen,
								(char **) logdetail);
}
#endif

/*
 * Record who authenticated, as PostgreSQL's own methods do (set_authn_id):
 * SYSTEM_USER (16+) and log_connections show it. Exported only from 18.
 */
void
pgaadauth_set_authn_id(Port *port, const char *id)
{
#if PG_VERSION_NUM >= 180000
	set_authn_id(port, id);
#elif PG_VERSION_NUM >= 160000
	MyClientConnectionInfo.authn_id = MemoryContextStrdup(TopMemoryContext, id);
	MyClientConnectionInfo.auth_method = port->hba->auth_method;
	if (Log_connections)
		ereport(LOG,
				errmsg("connection authenticated: identity=\"%s\" method=%s (%s:%d)",
					   id, hba_authname(port->hba->auth_method),
					   port->hba->sourcefile, port->hba->linenumber));
#else
	port->authn_id = MemoryContextStrdup(TopMemoryContext, id);
	if (Log_connections)
		ereport(LOG,
				errmsg("connection authenticated: identity=\"%s\" method=%s (%s:%d)",
					   id, hba_authname(port->hba->auth_method),
					   HbaFileName, port->hba->linenumber));
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


#if PG_VERSION_NUM >= 180000
/*
 * The OAuth validator's callbacks (PostgreSQL 18's oauth method): only
 * validate_cb, which Rust passes in. Rust exports
 * _PG_oauth_validator_module_init, which returns this table.
 */
static OAuthValidatorCallbacks oauth_callbacks = {
	.magic = PG_OAUTH_VALIDATOR_MAGIC,
};

const OAuthValidatorCallbacks *
pgaadauth_oauth_callbacks(ValidatorValidateCB validate)
{
	oauth_callbacks.validate_cb = validate;
	return &oauth_callbacks;
}

/* The session's Port: the validator is not handed one. */
Port *
pgaadauth_my_port(void)
{
	return MyProcPort;
}

/* Whether the connection matched an oauth line. */
bool
pgaadauth_port_is_oauth(Port *port)
{
	return port->hba != NULL && port->hba->auth_method == uaOAuth;
}

/* The issuer option of the connection's oauth line. */
const char *
pgaadauth_port_oauth_issuer(Port *port)
{
	return port->hba != NULL ? port->hba->oauth_issuer : NULL;
}

/* Whether the oauth line says delegate_ident_mapping=1. */
bool
pgaadauth_port_oauth_delegates_mapping(Port *port)
{
	return port->hba != NULL && port->hba->oauth_skip_usermap;
}

/* Fill the validator's result; authn_id is copied (PostgreSQL pfrees it). */
void
pgaadauth_oauth_set_result(ValidatorModuleResult *result, bool authorized,
						   const char *authn_id)
{
	result->authorized = authorized;
	result->authn_id = authn_id != NULL ? pstrdup(authn_id) : NULL;
}
#endif
