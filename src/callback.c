/*-------------------------------------------------------------------------
 *
 * callback.c
 *	  User functions called from C: signature and privilege checks, cached
 *	  function-manager lookups, and fingerprints of their definitions.
 *
 * Aggregates (and later projections and upcasters) call SQL functions that
 * users register by regprocedure.  The checks here run when a function is
 * registered, so a wrong signature is reported then rather than in the middle
 * of a fold, and again (EXECUTE only) each time it is used, since privileges
 * can be revoked after registration.  Calls go through an FmgrInfo looked up
 * once: the function manager then handles strictness of the call protocol,
 * SECURITY DEFINER and SET clauses exactly as for a call from SQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

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
	cb->fn = fn;
	fmgr_info_cxt(fn, &cb->flinfo, mcxt);
	cb->strict = cb->flinfo.fn_strict;
}

/*
 * es_function_fingerprint
 *		A hash of what a function does: its language, source (or library
 *		symbol), strictness, and the settings and security it runs with.
 *
 * CREATE OR REPLACE FUNCTION with a new body changes it; so does a change of
 * language, of STRICT (it decides whether a NULL state is passed on), or of
 * SECURITY DEFINER / SET clauses.  Replacing a function with an identical
 * definition does not: the fold it computes is the same.  It is computed from content, not from
 * OIDs, so it survives pg_dump and restore.
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
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", fn),
				 errhint("A function registered with the extension was dropped; register a new one.")));
	proc = (Form_pg_proc) GETSTRUCT(tup);

	initStringInfo(&buf);
	lang = get_language_name(proc->prolang, false);
	appendStringInfo(&buf, "%s|%c|%c|%c|", lang,
					 proc->prosecdef ? 't' : 'f', proc->proisstrict ? 't' : 'f',
					 proc->provolatile);
	d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(d));
	appendStringInfoChar(&buf, '|');
	d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_probin, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(d));
	appendStringInfoChar(&buf, '|');
	d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_proconfig, &isnull);
	if (!isnull)
		appendStringInfoString(&buf, TextDatumGetCString(DirectFunctionCall1(array_out, d)));
	ReleaseSysCache(tup);

	h = hash_bytes_extended((const unsigned char *) buf.data, buf.len, 0);
	pfree(buf.data);
	return h;
}
