/*-------------------------------------------------------------------------
 *
 * callback.c
 *	  User functions called from C: signature and privilege checks, cached
 *	  function-manager lookups, fingerprints of their definitions, and the
 *	  one way user code is run: as its definition's owner, restricted.
 *
 * Aggregates, upcasters and projections call SQL functions that users
 * register by regprocedure.  The checks here run when a function is
 * registered, so a wrong signature is reported then rather than in the middle
 * of a fold, and again (EXECUTE, for the definition's owner) each time it is
 * loaded, since privileges can be revoked after registration.  Calls go
 * through an FmgrInfo looked up once: the function manager then handles
 * strictness, SECURITY DEFINER and SET clauses exactly as for a call from SQL.
 *
 * Every definition has an owner (the role that defined it) and a search_path
 * (the definer's, captured when it was defined, with pg_temp moved last).
 * User code runs inside a call scope (es_scope_enter/es_scope_exit) the way
 * PostgreSQL runs the index expressions of a table during maintenance or the
 * query of a materialized view during a refresh: as the owner, under
 * SECURITY_RESTRICTED_OPERATION (no SET ROLE, no temporary objects, nothing
 * left in the session), with search_path pinned in a GUC nest level of its
 * own that is rolled back when the scope ends, so nothing a callback sets
 * with set_config or SET survives it.  A scope is one call of a handler,
 * reset, upcaster or decide, and one fold's run of evolve calls (a nest
 * level per evolve call would cost more than a cheap evolve: PostgreSQL 15
 * walks every setting to leave one).  Its result then depends only on the
 * definition and the events, never on who happened to call, with which
 * search_path, or in which session.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "compat.h"
#include "event_sourcing.h"

/*
 * describe_signature
 *		"(jsonb, es_events) and return jsonb", for error details.
 */
static char *
describe_signature(int nargs, const Oid *argtypes, Oid rettype)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '(');
	for (int i = 0; i < nargs; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "",
						 format_type_be(argtypes[i]));
	appendStringInfo(&buf, ") and return %s", format_type_be(rettype));
	return buf.data;
}

/*
 * es_check_callback
 *		Check that fn is a plain function with the given argument and result
 *		types, and that the current user may execute it.  'role' names the
 *		function's part ("evolve", "decide") in messages.
 */
void
es_check_callback(Oid fn, const char *role, int nargs, const Oid *argtypes,
				  Oid rettype)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		ok;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s function with OID %u does not exist", role, fn)));
	proc = (Form_pg_proc) GETSTRUCT(tup);

	ok = proc->prokind == PROKIND_FUNCTION &&
		!proc->proretset &&
		proc->pronargs == nargs &&
		proc->prorettype == rettype;
	for (int i = 0; ok && i < nargs; i++)
		ok = proc->proargtypes.values[i] == argtypes[i];
	ReleaseSysCache(tup);

	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("%s function %s has the wrong signature",
						role, format_procedure(fn)),
				 errdetail("The %s function must take %s (one value, not a set).",
						   role, describe_signature(nargs, argtypes, rettype))));

	es_check_execute(fn);
}

/*
 * es_check_execute
 *		The current user must have EXECUTE on fn (42501 otherwise).
 */
void
es_check_execute(Oid fn)
{
	if (es_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, get_func_name(fn));
}

/*
 * es_callback_init
 *		Look a function up for repeated calls; the FmgrInfo lives in mcxt.
 */
void
es_callback_init(EsCallback *cb, Oid fn, MemoryContext mcxt)
{
	/* nothing decided about inlining yet (inline.c): every field zero */
	MemSet(cb, 0, sizeof(EsCallback));
	cb->fn = fn;
	fmgr_info_cxt(fn, &cb->flinfo, mcxt);
	cb->strict = cb->flinfo.fn_strict;
	cb->mcxt = mcxt;
}

/*
 * append_text_array
 *		Append the elements of a text[] (a function's SET clauses) to buf.
 *
 * The array is walked directly: array_out needs a function-call context
 * (its type cache lives in fn_extra), which a direct call does not have.
 */
static void
append_text_array(StringInfo buf, Datum d)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			appendStringInfoString(buf, "\\N");
		else
			appendStringInfoString(buf, TextDatumGetCString(elems[i]));
		appendStringInfoChar(buf, '\x1f');
	}
}

/*
 * es_function_fingerprint
 *		A hash of what a function does: its language, source (or library
 *		symbol, or SQL-standard body), strictness, volatility, and the
 *		settings and security it runs with.
 *
 * CREATE OR REPLACE FUNCTION with a new body changes it; so does a change of
 * language, of STRICT (it decides whether a NULL state is passed on), of
 * SECURITY DEFINER (and, for such a function, of its owner) or of its SET
 * clauses.  Replacing a function with an identical definition does not: the
 * fold it computes is the same.  It is computed from content, not from OIDs,
 * so it survives pg_dump and restore (except for a BEGIN ATOMIC body, whose
 * stored form names objects by OID: a restore then costs one fold from the
 * start).
 */
uint64
es_function_fingerprint(Oid fn)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	StringInfoData buf;
	Datum		d;
	bool		isnull;
	uint64		h;
	char	   *lang;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	/* dropped: the caller reports it, naming the definition */
	if (!HeapTupleIsValid(tup))
		return hash_bytes_uint32((uint32) fn);
	proc = (Form_pg_proc) GETSTRUCT(tup);

	initStringInfo(&buf);
	lang = get_language_name(proc->prolang, false);
	appendStringInfo(&buf, "%s|%c|%c|%c|", lang,
					 proc->prosecdef ? 't' : 'f', proc->proisstrict ? 't' : 'f',
					 proc->provolatile);
	if (proc->prosecdef)
		appendStringInfo(&buf, "%u|", proc->proowner);
	d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(d));
	appendStringInfoChar(&buf, '|');
	d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_probin, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(d));
	appendStringInfoChar(&buf, '|');
	d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosqlbody, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(d));
	appendStringInfoChar(&buf, '|');
	d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_proconfig, &isnull);
	if (!isnull)
		append_text_array(&buf, d);
	ReleaseSysCache(tup);

	h = hash_bytes_extended((const unsigned char *) buf.data, buf.len, 0);
	pfree(buf.data);
	return h;
}

/*
 * es_capture_search_path
 *		The caller's search_path as a definition keeps it: every schema as
 *		the definer listed it, except temporary ones, and pg_temp last.
 *
 * Like CREATE FUNCTION ... SET search_path FROM CURRENT, with one change:
 * without it, pg_temp would be searched first for relations, and any
 * session that triggers the callback could shadow its tables with
 * temporary ones of its own.
 */
char *
es_capture_search_path(void)
{
	char	   *raw = pstrdup(namespace_search_path ? namespace_search_path : "");
	List	   *names;
	ListCell   *lc;
	StringInfoData buf;

	if (!SplitIdentifierString(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in search_path"),
				 errhint("Definitions keep the search_path they were defined with; set a valid one first.")));

	initStringInfo(&buf);
	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);

		if (strcmp(name, "pg_temp") == 0 ||
			strncmp(name, "pg_temp_", 8) == 0 ||
			strncmp(name, "pg_toast_temp_", 14) == 0)
			continue;
		appendStringInfo(&buf, "%s, ", quote_identifier(name));
	}
	appendStringInfoString(&buf, "pg_temp");
	list_free(names);
	pfree(raw);
	return buf.data;
}

/*
 * es_scope_enter
 *		Start running user code as 'owner' with search_path 'search_path'
 *		(as es_capture_search_path made it), until es_scope_exit.
 *
 * The security context is restricted, as PostgreSQL restricts it for code
 * run on behalf of a table's owner (index expressions in VACUUM, a
 * materialized view's query in REFRESH): the callback cannot change roles,
 * create temporary objects or leave anything in the session that would
 * later run as someone else.  search_path is set in a GUC nest level of the
 * scope's own.  An error in between needs no cleanup here: (sub)transaction
 * abort restores the user, the security context and the settings.
 */
void
es_scope_enter(EsCallScope *scope, Oid owner, const char *search_path)
{
	GetUserIdAndSecContext(&scope->save_userid, &scope->save_sec_context);
	SetUserIdAndSecContext(owner, scope->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	scope->guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", search_path,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * es_scope_exit
 *		Leave a call scope: every setting made in it is rolled back, and the
 *		caller's user and security context come back.
 */
void
es_scope_exit(EsCallScope *scope)
{
	AtEOXact_GUC(false, scope->guc_level);
	SetUserIdAndSecContext(scope->save_userid, scope->save_sec_context);
}

/*
 * es_scope_hold_enter
 *		Be in the scope of (owner, search_path) for the next call, reusing
 *		the scope the hold has open when it is the same one.
 *
 * A read that calls upcasters for event after event (es_load, es_read_all,
 * es_read_category) holds their scope from the first call to the end of
 * the read instead of entering and leaving it around every call: leaving
 * it (AtEOXact_GUC) walks every setting, a cost of the order of the
 * upcaster itself.  The calls then share one GUC nest level, as the evolve
 * calls of one fold do: what a call sets with set_config(..., true) is seen
 * by the next call of the same read, never by the caller.  The reader's own
 * code between the calls runs as the owner, restricted; it is the
 * extension's C code that scans es_events and fills the result, which
 * checks no privilege and calls no user code.  Nothing else may run while
 * a hold is open: the caller releases it before calling anything that
 * runs as someone else.  An error needs no cleanup (the abort restores the
 * user and the settings).
 */
void
es_scope_hold_enter(EsScopeHold *hold, Oid owner, const char *search_path)
{
	if (hold->open)
	{
		if (hold->owner == owner &&
			(hold->search_path == search_path ||
			 strcmp(hold->search_path, search_path) == 0))
			return;
		es_scope_hold_release(hold);
	}
	es_scope_enter(&hold->scope, owner, search_path);
	hold->owner = owner;
	hold->search_path = search_path;
	hold->open = true;
}

/*
 * es_scope_hold_release
 *		Leave the scope a hold has open, if any: the caller's user, security
 *		context and settings come back.
 */
void
es_scope_hold_release(EsScopeHold *hold)
{
	if (hold->open)
	{
		es_scope_exit(&hold->scope);
		hold->open = false;
	}
}

/*
 * es_callback_invoke
 *		Call a user function, inside a scope (whose end rolls back what the
 *		call set).  A callback that reads through the API recurses into
 *		further callbacks: that fails with a stack-depth error rather than
 *		crash.
 */
Datum
es_callback_invoke(FunctionCallInfo fcinfo)
{
	check_stack_depth();
	return FunctionCallInvoke(fcinfo);
}

/*
 * es_owner_name
 *		A role's name for messages ("?" plus its OID when it was dropped).
 */
char *
es_owner_name(Oid owner)
{
	char	   *name = GetUserNameFromId(owner, true);

	return name ? name : psprintf("(dropped role %u)", owner);
}

/*
 * es_check_member
 *		Only members of a definition's owner role may change, extend, drop,
 *		run, skip or rebuild it (42501).  'what' names the definition, as
 *		in "aggregate of category \"account\"".
 */
void
es_check_member(Oid owner, const char *what)
{
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s", what),
				 errdetail("The %s belongs to role \"%s\", the role that defined it; "
						   "only members of that role may change it.",
						   what, es_owner_name(owner)),
				 errhint("Ask role \"%s\" (or a superuser) to do it, or to grant you membership.",
						 es_owner_name(owner))));
}

/*
 * es_check_owner_can_run
 *		Before a definition's callback runs: its owner still exists and may
 *		still execute the function.  'what' names the definition and 'part'
 *		the function's role in it, for messages.
 */
void
es_check_owner_can_run(Oid owner, Oid fn, const char *what, const char *part)
{
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner of %s no longer exists", what),
				 errdetail("Its callbacks run as the role that defined it, which was dropped."),
				 errhint("Define it again as an existing role, or have the extension's owner "
						 "set its owner column to an existing role.")));
	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(fn)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the %s function of %s no longer exists", part, what),
				 errdetail("Its function (OID %u) was dropped.", fn),
				 errhint("Create the function again and define it again.")));
	if (es_proc_aclcheck(fn, owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the owner of %s may no longer execute its %s function %s",
						what, part, format_procedure(fn)),
				 errdetail("Its callbacks run as role \"%s\".", es_owner_name(owner)),
				 errhint("GRANT EXECUTE on the function to role \"%s\".",
						 es_owner_name(owner))));
}

/*
 * es_function_owner
 *		The owner of a function (InvalidOid when it no longer exists): the
 *		owner given to definitions made before definitions had one.
 */
Oid
es_function_owner(Oid fn)
{
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	return owner;
}
