/*-------------------------------------------------------------------------
 *
 * inline.c
 *	  SQL callbacks at expression speed: a SQL-language callback whose body
 *	  is a single SELECT <expression> is evaluated as that expression,
 *	  without an executor start per call.
 *
 * A call of a SQL function through the function manager (fmgr_sql) starts
 * and ends an executor for its statement at every call: for a cheap evolve
 * that is most of the cost of a fold.  The planner avoids it when a SQL
 * function appears in a query by inlining it (inline_function in
 * optimizer/util/clauses.c).  The same is done here for callbacks called
 * from C: the body is parsed and analyzed with the function's argument types
 * (its arguments become Params 1..n, as fmgr_sql's parser hooks make them),
 * checked to be a lone expression, and run through the planner's
 * expression_planner (constant folding, inlining of the SQL functions it
 * calls), once per definition; each use builds an ExprState from it, and
 * each call sets the Params and evaluates the ExprState.  A use is one
 * fold for evolve (aggregate.c); for an upcaster it is its step in the
 * upcaster registry (upcast.c), which lives across transactions: its
 * EsCallback is decided again (compiled form looked up, ExprState built) at
 * its first call in each transaction, as fmgr_sql rebuilds its own state,
 * and whenever es_catalog_generation(), a type, operator, cast or schema, or
 * the setting changed since.
 *
 * The result is the one the function manager's call would give, because it
 * is what fmgr_sql itself computes: it parses the same text with the same
 * parser hooks, and plans it with no bound parameters, so the planner
 * applies the same eval_const_expressions to the same expression; the plan
 * is a Result node projecting it.  Only what an executor start would change
 * is left out, so everything for which it matters is called through the
 * function manager as before:
 *
 *	- other languages, SECURITY DEFINER, SET clauses (the function manager
 *	  switches user and settings around the call), a function an object
 *	  access hook (sepgsql) wants to see called;
 *	- VOLATILE functions: fmgr_sql gives each of their statements a new
 *	  snapshot after a CommandCounterIncrement;
 *	- bodies that are not one SELECT of one expression: a FROM, WHERE,
 *	  GROUP BY and the like, aggregates, window functions, set-returning
 *	  functions, sublinks, several statements;
 *	- composite, polymorphic or pseudo-type results and arguments.
 *
 * The planner's inline_function also refuses an IMMUTABLE function whose
 * body calls a STABLE function (or a STABLE one calling a VOLATILE one), to
 * keep queries from folding to constants what is not constant.  Nothing is
 * folded here that fmgr_sql's own planning would not fold, so that rule is
 * not needed (and bank_evolve, IMMUTABLE and calling the STABLE
 * jsonb_build_object, would fail it).  Likewise a STRICT function is not
 * required to have a strict body: a NULL argument never reaches it
 * (es_callback_call answers NULL, as SQL does).
 *
 * Compilation happens at the first call, inside the caller's scope
 * (callback.c): as the definition's owner with its search_path, so names in
 * the body resolve as they do for the function manager's call.  The
 * compiled expression is cached per function, owner and search_path, in
 * memory that lives as long as the backend; the cache is emptied whenever
 * es_catalog_generation() moves (any function created, replaced or dropped,
 * any definition changed) or a type, operator, cast or schema changes.
 * Each use copies the expression and builds its own ExprState in the
 * caller's memory (execution permission on the functions it calls is
 * checked then, as the owner, as ExecutorStart would), so a cache flush in
 * the middle of a fold, or a callback that recursively folds the same
 * aggregate, cannot disturb it.  An ExprState is not reentrant: a call of
 * an EsCallback made while it is being evaluated (an upcaster whose body
 * reads events that the same step upcasts) goes through the function
 * manager, with an FmgrInfo of its own (fmgr_sql's state in fn_extra is not
 * reentrant either).
 *
 * event_sourcing.inline_sql_callbacks (on by default) turns it off, for
 * comparison; a DEBUG1 message reports each compilation and its outcome.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/functions.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/params.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parse_node.h"
#include "catalog/namespace.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "event_sourcing.h"

bool		es_inline_enabled = true;

/* One compiled definition (expr NULL: called through the function manager) */
typedef struct InlineEntry
{
	struct InlineEntry *next;
	Oid			fn;
	Oid			owner;
	char	   *search_path;
	Expr	   *expr;
} InlineEntry;

static MemoryContext cache_cxt = NULL;
static InlineEntry *cache = NULL;
static uint64 cache_generation = 0;
static bool callbacks_registered = false;
/* type, operator, cast and schema changes seen (EsCallback.invals) */
static uint64 invals = 0;

/*
 * inline_invalidate
 *		A type, operator, cast or schema changed: compile everything again.
 */
static void
inline_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	cache_generation = 0;
	invals++;
}

/*
 * cache_check
 *		Empty the cache when definitions may have changed.
 */
static void
cache_check(void)
{
	if (!callbacks_registered)
	{
		CacheRegisterSyscacheCallback(TYPEOID, inline_invalidate, (Datum) 0);
		CacheRegisterSyscacheCallback(OPEROID, inline_invalidate, (Datum) 0);
		CacheRegisterSyscacheCallback(CASTSOURCETARGET, inline_invalidate, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, inline_invalidate, (Datum) 0);
		callbacks_registered = true;
	}
	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(TopMemoryContext,
										  "event_sourcing inlined callbacks",
										  ALLOCSET_SMALL_SIZES);
	if (cache_generation != es_catalog_generation())
	{
		MemoryContextReset(cache_cxt);
		cache = NULL;
		cache_generation = es_catalog_generation();
	}
}

/* Error context: as fmgr_sql reports errors in a SQL function's body */
typedef struct InlineErrorArg
{
	const char *fname;
	const char *src;
	bool		startup;
} InlineErrorArg;

static void
inline_error_callback(void *arg)
{
	InlineErrorArg *e = (InlineErrorArg *) arg;
	int			pos = geterrposition();

	if (pos > 0 && e->src != NULL)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery(e->src);
	}
	if (e->startup)
		errcontext("SQL function \"%s\" during startup", e->fname);
	else
		errcontext("SQL function \"%s\" statement 1", e->fname);
}

/*
 * compile
 *		The body of fn as an expression over Params 1..nargs, ready for
 *		ExecInitExpr, or NULL (with *why set) when it must be called through
 *		the function manager.  Allocates in the current memory context.
 */
static Expr *
compile(Oid fn, const char **why)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	Datum		d;
	bool		isnull;
	Query	   *query;
	Expr	   *expr = NULL;
	char		typtype;
	InlineErrorArg earg;
	ErrorContextCallback errcb;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
	{
		*why = "it does not exist";
		return NULL;
	}
	proc = (Form_pg_proc) GETSTRUCT(tup);

	*why = NULL;
	if (proc->prolang != SQLlanguageId)
		*why = "it is not LANGUAGE sql";
	else if (proc->prokind != PROKIND_FUNCTION || proc->proretset)
		*why = "it is not a plain function";
	else if (proc->prosecdef)
		*why = "it is SECURITY DEFINER";
	else if (!heap_attisnull(tup, Anum_pg_proc_proconfig, NULL))
		*why = "it has SET clauses";
	else if (proc->provolatile == PROVOLATILE_VOLATILE)
		*why = "it is VOLATILE";
	else if (FmgrHookIsNeeded(fn))
		*why = "a security hook watches its calls";
	if (*why == NULL)
	{
		typtype = get_typtype(proc->prorettype);
		if (typtype == TYPTYPE_COMPOSITE || typtype == TYPTYPE_PSEUDO ||
			proc->prorettype == VOIDOID)
			*why = "of its result type";
		for (int i = 0; *why == NULL && i < proc->pronargs; i++)
		{
			Oid			t = proc->proargtypes.values[i];

			if (IsPolymorphicType(t) || get_typtype(t) == TYPTYPE_PSEUDO)
				*why = "of its argument types";
		}
	}
	if (*why != NULL)
	{
		ReleaseSysCache(tup);
		return NULL;
	}

	earg.fname = NameStr(proc->proname);
	earg.src = NULL;
	earg.startup = true;
	errcb.callback = inline_error_callback;
	errcb.arg = &earg;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosqlbody, &isnull);
	if (!isnull)
	{
		/* SQL-standard body (RETURN expr, BEGIN ATOMIC): stored analyzed */
		Node	   *n = stringToNode(TextDatumGetCString(d));
		List	   *queries;

		if (IsA(n, List))
			queries = linitial_node(List, castNode(List, n));
		else
			queries = list_make1(n);
		query = list_length(queries) == 1 ? linitial(queries) : NULL;
	}
	else
	{
		SQLFunctionParseInfoPtr pinfo;
		List	   *raw;
		char	   *src;

		d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
		if (isnull)
			elog(ERROR, "null prosrc for function %u", fn);
		src = TextDatumGetCString(d);
		earg.src = src;
		/* as fmgr_sql: no call expression, no input collation */
		pinfo = prepare_sql_fn_parse_info(tup, NULL, InvalidOid);
		raw = pg_parse_query(src);
		if (list_length(raw) == 1)
		{
			ParseState *pstate = make_parsestate(NULL);

			pstate->p_sourcetext = src;
			sql_fn_parser_setup(pstate, pinfo);
			query = transformTopLevelStmt(pstate, linitial_node(RawStmt, raw));
			free_parsestate(pstate);
		}
		else
			query = NULL;
	}

	if (query == NULL || !IsA(query, Query))
		*why = "its body is not one statement";
	else if (query->commandType != CMD_SELECT ||
			 query->utilityStmt ||
			 query->hasAggs ||
			 query->hasWindowFuncs ||
			 query->hasTargetSRFs ||
			 query->hasSubLinks ||
			 query->hasRecursive ||
			 query->hasModifyingCTE ||
			 query->hasForUpdate ||
			 query->cteList ||
			 query->rtable ||
			 query->jointree == NULL ||
			 query->jointree->fromlist ||
			 query->jointree->quals ||
			 query->groupClause ||
			 query->groupingSets ||
			 query->havingQual ||
			 query->windowClause ||
			 query->distinctClause ||
			 query->sortClause ||
			 query->limitOffset ||
			 query->limitCount ||
			 query->setOperations ||
			 query->rowMarks ||
			 list_length(query->targetList) != 1)
		*why = "its body is not SELECT of one expression";
	else if (check_sql_fn_retval(list_make1(list_make1(query)),
								 proc->prorettype, NULL, false, NULL))
		*why = "it returns a whole row";
	else
	{
		expr = ((TargetEntry *) linitial(query->targetList))->expr;
		if (exprType((Node *) expr) != proc->prorettype)
			*why = "its expression has another type";
		else
		{
			expr = expression_planner(expr);
			if (expression_returns_set((Node *) expr) ||
				contain_subplans((Node *) expr))
				*why = "its expression is not a plain expression";
		}
	}

	error_context_stack = errcb.previous;
	ReleaseSysCache(tup);
	return *why == NULL ? expr : NULL;
}

/*
 * lookup
 *		The compiled body of fn for the current user and search_path (NULL:
 *		not inlinable), compiling it on first use.
 */
static Expr *
lookup(Oid fn)
{
	const char *path = namespace_search_path ? namespace_search_path : "";
	Oid			owner = GetUserId();
	InlineEntry *e;
	Expr	   *expr;
	const char *why;
	MemoryContext tmp;
	MemoryContext old;

	cache_check();
	for (e = cache; e != NULL; e = e->next)
		if (e->fn == fn && e->owner == owner && strcmp(e->search_path, path) == 0)
			return e->expr;

	tmp = AllocSetContextCreate(CurrentMemoryContext, "event_sourcing inline compile",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(tmp);
	expr = compile(fn, &why);
	MemoryContextSwitchTo(old);

	/* compiling may have processed invalidations: check before storing */
	cache_check();
	e = MemoryContextAllocZero(cache_cxt, sizeof(InlineEntry));
	e->fn = fn;
	e->owner = owner;
	e->search_path = MemoryContextStrdup(cache_cxt, path);
	old = MemoryContextSwitchTo(cache_cxt);
	e->expr = expr ? copyObject(expr) : NULL;
	MemoryContextSwitchTo(old);
	e->next = cache;
	cache = e;
	MemoryContextDelete(tmp);

	if (e->expr)
		elog(DEBUG1, "event_sourcing: function %s is evaluated as an expression",
			 format_procedure(fn));
	else
		elog(DEBUG1, "event_sourcing: function %s is called through the function manager: %s",
			 format_procedure(fn), why);
	return e->expr;
}

/*
 * forget
 *		Drop what prepare built for cb: its next call decides again.
 */
static void
forget(EsCallback *cb)
{
	if (cb->exec_cxt != NULL)
	{
		if (cb->econtext != NULL)
			FreeExprContext(cb->econtext, true);
		MemoryContextDelete(cb->exec_cxt);
	}
	cb->exec_cxt = NULL;
	cb->expr = NULL;
	cb->econtext = NULL;
	cb->params = NULL;
	cb->fname = NULL;
	cb->busy = false;
	cb->inline_status = 0;
}

/*
 * prepare
 *		First call of cb (in this transaction, with these definitions): build
 *		its ExprState, or settle for fmgr calls.
 */
static void
prepare(EsCallback *cb, int nargs)
{
	Expr	   *expr;
	MemoryContext old;
	Oid		   *argtypes;
	int			n;

	/* a call made while compiling (constant folding) uses fmgr */
	cb->inline_status = -1;
	cb->lxid = MyProc->lxid;
	cb->enabled = es_inline_enabled;
	if (!es_inline_enabled)
		return;
	expr = lookup(cb->fn);
	/* lookup emptied the cache if anything moved: what it gave is current */
	cb->generation = es_catalog_generation();
	cb->invals = invals;
	/* (SECURITY DEFINER and SET clauses were refused: the guard is cheap) */
	if (expr == NULL || cb->flinfo.fn_addr != fmgr_sql)
		return;

	(void) get_func_signature(cb->fn, &argtypes, &n);
	if (n != nargs)
		return;

	cb->exec_cxt = AllocSetContextCreate(cb->mcxt, "event_sourcing inlined callback",
										 ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cb->exec_cxt);
	cb->params = makeParamList(nargs);
	for (int i = 0; i < nargs; i++)
	{
		ParamExternData *p = &cb->params->params[i];

		p->value = (Datum) 0;
		p->isnull = true;
		p->pflags = PARAM_FLAG_CONST;
		p->ptype = argtypes[i];
	}
	cb->params->numParams = nargs;
	cb->econtext = CreateStandaloneExprContext();
	cb->econtext->ecxt_param_list_info = cb->params;
	/* permission to execute what it calls is checked here, as the owner */
	cb->expr = ExecInitExpr(copyObject(expr), NULL);
	cb->fname = get_func_name(cb->fn);
	MemoryContextSwitchTo(old);
	cb->inline_status = 1;
}

/*
 * call_fmgr
 *		Call cb through the function manager.  A nested call of cb (a read
 *		inside an upcaster that upcasts with the same step) gets an FmgrInfo
 *		of its own: fmgr_sql keeps the state of the call in progress in
 *		fn_extra, and a second call through the same FmgrInfo would run on
 *		it (and return NULL).
 */
static Datum
call_fmgr(EsCallback *cb, FunctionCallInfo fcinfo)
{
	Datum		result;

	if (cb->busy)
	{
		FmgrInfo	flinfo;
		FmgrInfo   *save = fcinfo->flinfo;

		/* in the caller's (per-call) memory, like its result */
		fmgr_info(cb->fn, &flinfo);
		fcinfo->flinfo = &flinfo;
		result = es_callback_invoke(fcinfo);
		fcinfo->flinfo = save;
		return result;
	}
	cb->busy = true;
	PG_TRY();
	{
		result = es_callback_invoke(fcinfo);
	}
	PG_FINALLY();
	{
		cb->busy = false;
	}
	PG_END_TRY();
	return result;
}

/*
 * es_callback_call
 *		Call cb with fcinfo's arguments, inside a scope (callback.c): as its
 *		expression when the body is one, else through the function manager.
 *		A STRICT function given a NULL argument answers NULL without running.
 *		The result is allocated in the current memory context.
 */
Datum
es_callback_call(EsCallback *cb, FunctionCallInfo fcinfo)
{
	Datum		result;
	InlineErrorArg earg;
	ErrorContextCallback errcb;

	if (cb->strict)
		for (int i = 0; i < fcinfo->nargs; i++)
			if (fcinfo->args[i].isnull)
			{
				fcinfo->isnull = true;
				return (Datum) 0;
			}

	/*
	 * A callback kept across calls (an upcaster's, in the registry) is
	 * decided again in each transaction, as fmgr_sql rebuilds its own state,
	 * and whenever a definition or the setting changed.
	 */
	if (cb->inline_status != 0 &&
		(cb->lxid != MyProc->lxid ||
		 cb->enabled != es_inline_enabled ||
		 (cb->inline_status > 0 &&
		  (cb->generation != es_catalog_generation() || cb->invals != invals))))
	{
		if (cb->busy)
			return call_fmgr(cb, fcinfo);
		forget(cb);
	}
	if (cb->inline_status == 0)
		prepare(cb, fcinfo->nargs);
	/* an ExprState is not reentrant: a nested call of cb (a read inside) uses fmgr */
	if (cb->inline_status < 0 || cb->busy)
		return call_fmgr(cb, fcinfo);

	check_stack_depth();
	for (int i = 0; i < fcinfo->nargs; i++)
	{
		cb->params->params[i].value = fcinfo->args[i].value;
		cb->params->params[i].isnull = fcinfo->args[i].isnull;
	}
	earg.fname = cb->fname;
	earg.src = NULL;
	earg.startup = false;
	errcb.callback = inline_error_callback;
	errcb.arg = &earg;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	cb->busy = true;
	PG_TRY();
	{
		result = ExecEvalExpr(cb->expr, cb->econtext, &fcinfo->isnull);
	}
	PG_FINALLY();
	{
		cb->busy = false;
	}
	PG_END_TRY();
	error_context_stack = errcb.previous;
	return result;
}

/*
 * es_callback_inlined
 *		Whether cb's calls so far were evaluated as an expression.
 */
bool
es_callback_inlined(EsCallback *cb)
{
	return cb->inline_status > 0;
}

/*
 * es_inline_init
 *		Define the setting; called from _PG_init.
 */
void
es_inline_init(void)
{
	DefineCustomBoolVariable("event_sourcing.inline_sql_callbacks",
							 "Evaluates SQL callbacks whose body is one expression without an executor.",
							 "Off: every callback is called through the function manager, "
							 "starting an executor per call for a SQL function.",
							 &es_inline_enabled,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
}
