/*-------------------------------------------------------------------------
 *
 * projection.c
 *	  Projections: decoding definitions, the handler call, the inline
 *	  dispatch trigger.  (Defining, dropping and reading definitions by
 *	  name: projection_def.c; driving them: projection_run.c.)
 *
 * A projection is a handler(event es_events) RETURNS void that builds a read
 * model, with the event types it wants (NULL: all) and a mode.  Inline
 * projections run inside the appending transaction: an AFTER INSERT row
 * trigger on es_events calls their handlers for each event es_append
 * stores, in global order, through an FmgrInfo looked up once per
 * definition.  The trigger does nothing for rows inserted any other way
 * (pg_restore's COPY), so restoring a dump does not apply events twice.
 * Async projections are driven from a checkpoint by projection_run.c.
 *
 * Handlers (and reset) run as the role that defined the projection, with
 * the search_path it was defined with, restricted (callback.c), whoever
 * appends or drives the projection: read models belong to the projection's
 * owner, and their results do not depend on who happened to append or on
 * that session's settings.  EXECUTE on the handler is checked for the owner
 * when defined and again whenever a definition is loaded.
 *
 * The inline definitions are cached per backend and reloaded when the
 * catalog generation moves (a definition changed, a function replaced).
 * A replaced cache is only freed at the end of the transaction, so a
 * handler that redefines projections cannot pull a definition from under
 * the dispatch that called it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/functions.h"
#include "executor/spi.h"
#include "nodes/params.h"
#include "tcop/tcopprot.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "compat.h"
#include "event_sourcing.h"

/* The inline projections, as cached. */
typedef struct EsInlineCache
{
	MemoryContext cxt;
	uint64		generation;
	int			n;
	EsProjection *projections;	/* sorted by name */
	TupleDesc	desc;			/* of es_events, for the event's slot */
} EsInlineCache;

static EsInlineCache *inline_cache = NULL;

/* the projection and event an error comes from, for its CONTEXT line */
typedef struct EsApplyContext
{
	const EsProjection *p;
	int64		position;
} EsApplyContext;

/*
 * cmp_cstring
 *		qsort/bsearch comparator for an array of C strings.
 */
static int
cmp_cstring(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * es_projection_types
 *		The event_types array of a definition as a sorted C string array in
 *		mcxt; *n is -1 when the array is NULL (every type).
 */
static char **
es_projection_types(Datum d, bool isnull, int *n, MemoryContext mcxt)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	char	  **types;

	if (isnull)
	{
		*n = -1;
		return NULL;
	}
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &nelems);
	types = MemoryContextAlloc(mcxt, sizeof(char *) * Max(nelems, 1));
	for (int i = 0; i < nelems; i++)
		types[i] = MemoryContextStrdup(mcxt, TextDatumGetCString(elems[i]));
	qsort(types, nelems, sizeof(char *), cmp_cstring);
	*n = nelems;
	return types;
}

/*
 * es_projection_from_tuple
 *		Decode one row of es_projection_defs into *p, allocating in mcxt.
 */
void
es_projection_from_tuple(HeapTuple tup, TupleDesc desc, EsProjection *p,
						 MemoryContext mcxt)
{
	Datum	   *values;
	bool	   *nulls;

	/* sized by the descriptor: a later version may add columns */
	Assert(desc->natts >= Natts_es_projection_defs);
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(tup, desc, values, nulls);
	memset(p, 0, sizeof(EsProjection));
	p->name = MemoryContextStrdup(mcxt, TextDatumGetCString(values[Anum_es_projection_defs_name - 1]));
	p->handler = DatumGetObjectId(values[Anum_es_projection_defs_handler - 1]);
	p->types = es_projection_types(values[Anum_es_projection_defs_event_types - 1],
								   nulls[Anum_es_projection_defs_event_types - 1],
								   &p->ntypes, mcxt);
	p->is_inline = strcmp(TextDatumGetCString(values[Anum_es_projection_defs_mode - 1]), "inline") == 0;
	p->reset = nulls[Anum_es_projection_defs_reset - 1] ? InvalidOid :
		DatumGetObjectId(values[Anum_es_projection_defs_reset - 1]);
	p->owner = DatumGetObjectId(values[Anum_es_projection_defs_owner - 1]);
	/* a 1.1 schema has no search_path: what the update to 1.2 will record */
	if (desc->natts >= Anum_es_projection_defs_search_path &&
		!nulls[Anum_es_projection_defs_search_path - 1])
		p->search_path = MemoryContextStrdup(mcxt,
											 TextDatumGetCString(values[Anum_es_projection_defs_search_path - 1]));
	else
		p->search_path = MemoryContextStrdup(mcxt, ES_LEGACY_SEARCH_PATH);
	p->position = DatumGetInt64(values[Anum_es_projection_defs_position - 1]);
	p->failed = strcmp(TextDatumGetCString(values[Anum_es_projection_defs_status - 1]), "failed") == 0;
	p->failed_position = nulls[Anum_es_projection_defs_failed_position - 1] ? 0 :
		DatumGetInt64(values[Anum_es_projection_defs_failed_position - 1]);
	p->last_error = nulls[Anum_es_projection_defs_last_error - 1] ? NULL :
		MemoryContextStrdup(mcxt, TextDatumGetCString(values[Anum_es_projection_defs_last_error - 1]));
	p->updated_at = DatumGetTimestampTz(values[Anum_es_projection_defs_updated_at - 1]);
	pfree(values);
	pfree(nulls);
}

/*
 * free_sql_plan
 *		Memory context callback: the context that held a projection's
 *		definition goes away, and with it the kept plan of its handler.
 */
static void
free_sql_plan(void *arg)
{
	SPI_freeplan((SPIPlanPtr) arg);
}

/*
 * prepare_sql_handler
 *		For a handler written as one SQL statement, plan that statement once
 *		and keep the plan (with mcxt's lifetime).
 *
 * A LANGUAGE sql function is parsed and planned again in every transaction
 * that calls it; an inline handler is called once per appending
 * transaction, so that would be per event.  A kept SPI plan, parsed with
 * the function's own parameter resolution (named parameter or $1), runs the
 * same statement with the same snapshot rules (a VOLATILE function sees the
 * effects of earlier statements, others run read-only) and is replanned by
 * the plan cache when the tables it uses change.  It is parsed as the
 * owner with the definition's search_path, as a call would be.  Functions
 * with SECURITY DEFINER, SET clauses, a pre-parsed body (BEGIN ATOMIC), more
 * than one statement, or a statement other than SELECT, INSERT, UPDATE,
 * DELETE (COMMIT, COPY, utility statements) keep going through the function
 * manager, which reports what a SQL function may not do.
 */
static void
prepare_sql_handler(EsProjection *p, MemoryContext mcxt)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		isnull;
	char	   *src;
	SQLFunctionParseInfoPtr pinfo;
	SPIPlanPtr	plan;
	MemoryContext old;
	MemoryContextCallback *cb;
	List	   *parsed;
	Node	   *stmt;
	EsCallScope scope;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(p->handler));
	if (!HeapTupleIsValid(tup))
		return;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prolang != SQLlanguageId || proc->prosecdef ||
		!heap_attisnull(tup, Anum_pg_proc_proconfig, NULL) ||
		!heap_attisnull(tup, Anum_pg_proc_prosqlbody, NULL))
	{
		ReleaseSysCache(tup);
		return;
	}
	src = TextDatumGetCString(SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull));
	parsed = pg_parse_query(src);
	stmt = list_length(parsed) == 1 ? linitial_node(RawStmt, parsed)->stmt : NULL;
	if (stmt == NULL ||
		!(IsA(stmt, SelectStmt) || IsA(stmt, InsertStmt) ||
		  IsA(stmt, UpdateStmt) || IsA(stmt, DeleteStmt)))
	{
		ReleaseSysCache(tup);
		return;
	}

	/* the plan cache reparses with pinfo: it lives as long as the plan */
	old = MemoryContextSwitchTo(mcxt);
	src = pstrdup(src);
	pinfo = prepare_sql_fn_parse_info(tup, NULL, InvalidOid);
	MemoryContextSwitchTo(old);
	p->sql_readonly = proc->provolatile != PROVOLATILE_VOLATILE;
	ReleaseSysCache(tup);

	es_scope_enter(&scope, p->owner, p->search_path);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare_params(src, (ParserSetupHook) sql_fn_parser_setup, pinfo, 0);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare_params failed for the handler of projection \"%s\": %s",
			 p->name, SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	SPI_finish();
	es_scope_exit(&scope);

	cb = MemoryContextAlloc(mcxt, sizeof(MemoryContextCallback));
	cb->func = free_sql_plan;
	cb->arg = plan;
	MemoryContextRegisterResetCallback(mcxt, cb);
	p->sqlplan = plan;
}

/*
 * es_projection_prepare
 *		Get a definition ready to call: the handler and its owner must still
 *		exist, and the owner must still have EXECUTE on the handler.  The
 *		FmgrInfo lives in mcxt.
 */
void
es_projection_prepare(EsProjection *p, MemoryContext mcxt)
{
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(p->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner of projection \"%s\" no longer exists", p->name),
				 errdetail("Handlers run as the role that defined the projection (OID %u).", p->owner),
				 errhint("Drop the projection and define it again as an existing role.")));
	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(p->handler)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the handler of projection \"%s\" no longer exists", p->name),
				 errdetail("Its function (OID %u) was dropped.", p->handler),
				 errhint("Drop the projection with es_drop_projection(%s) and define it again.",
						 quote_literal_cstr(p->name))));
	if (es_proc_aclcheck(p->handler, p->owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the owner of projection \"%s\" may no longer execute its handler %s",
						p->name, format_procedure(p->handler)),
				 errhint("GRANT EXECUTE on the handler to role \"%s\".",
						 GetUserNameFromId(p->owner, false))));
	es_callback_init(&p->cb, p->handler, mcxt);
	p->event_type = get_rel_type_id(es_catalog()->events);
	prepare_sql_handler(p, mcxt);
	p->ready = true;
}

/*
 * es_projection_matches
 *		Does the projection want events of this (upcast) type?
 */
bool
es_projection_matches(const EsProjection *p, const char *type)
{
	if (p->ntypes < 0)
		return true;
	return bsearch(&type, p->types, p->ntypes, sizeof(char *), cmp_cstring) != NULL;
}

/*
 * apply_error_context
 *		CONTEXT line of an error raised by a handler.
 */
static void
apply_error_context(void *arg)
{
	EsApplyContext *ctx = (EsApplyContext *) arg;

	errcontext("%s projection \"%s\", event at global position " INT64_FORMAT,
			   ctx->p->is_inline ? "inline" : "async", ctx->p->name, ctx->position);
}

/*
 * es_projection_apply
 *		Call the projection's handler for the event in slot, as its owner
 *		(callback.c's call scope): in a scope of its own, or, with
 *		in_scope, in the one the caller entered for the projection (an async
 *		run enters one for all the events it applies).
 *
 * The caller has upcast the event and checked its type.  An error in the
 * handler propagates, with a CONTEXT line naming the projection and event;
 * the user, security context and settings are restored by the
 * (sub)transaction abort.
 */
void
es_projection_apply(const EsProjection *p, TupleTableSlot *slot, int64 position,
					bool in_scope)
{
	EsCallScope scope;
	ErrorContextCallback errcallback;
	EsApplyContext ctx;

	LOCAL_FCINFO(fcinfo, 1);

	Assert(p->ready);
	check_stack_depth();
	ctx.p = p;
	ctx.position = position;
	errcallback.callback = apply_error_context;
	errcallback.arg = &ctx;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	if (!in_scope)
		es_scope_enter(&scope, p->owner, p->search_path);
	if (p->sqlplan != NULL)
	{
		ParamListInfo params = makeParamList(1);
		int			rc;

		params->params[0].value = ExecFetchSlotHeapTupleDatum(slot);
		params->params[0].isnull = false;
		params->params[0].pflags = PARAM_FLAG_CONST;
		params->params[0].ptype = p->event_type;
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rc = SPI_execute_plan_with_paramlist(p->sqlplan, params, p->sql_readonly, 0);
		if (rc < 0)
			ereport(ERROR,
					(errcode(rc == SPI_ERROR_TRANSACTION || rc == SPI_ERROR_COPY ?
							 ERRCODE_FEATURE_NOT_SUPPORTED : ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("the handler of projection \"%s\" cannot run its statement: %s",
							p->name, SPI_result_code_string(rc)),
					 errhint("A handler runs inside the appending or running transaction: "
							 "it cannot commit, roll back, use savepoints or COPY to the client.")));
		SPI_finish();
	}
	else
	{
		InitFunctionCallInfoData(*fcinfo, (FmgrInfo *) &p->cb.flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = ExecFetchSlotHeapTupleDatum(slot);
		fcinfo->args[0].isnull = false;
		(void) es_callback_invoke(fcinfo);
	}
	if (!in_scope)
		es_scope_exit(&scope);

	error_context_stack = errcallback.previous;
}

/*
 * es_projection_call_reset
 *		Call the projection's reset function (if it has one) as its owner.
 */
void
es_projection_call_reset(const EsProjection *p)
{
	EsCallScope scope;
	FmgrInfo	flinfo;

	LOCAL_FCINFO(fcinfo, 0);

	if (!OidIsValid(p->reset))
		return;
	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(p->reset)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the reset function of projection \"%s\" no longer exists", p->name),
				 errdetail("Its function (OID %u) was dropped.", p->reset),
				 errhint("Drop the projection with es_drop_projection(%s) and define it again.",
						 quote_literal_cstr(p->name))));
	es_check_owner_can_run(p->owner, p->reset,
						   psprintf("projection \"%s\"", p->name), "reset");
	fmgr_info(p->reset, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 0, InvalidOid, NULL, NULL);
	es_scope_enter(&scope, p->owner, p->search_path);
	(void) es_callback_invoke(fcinfo);	/* returns void: result ignored */
	es_scope_exit(&scope);
}

/*
 * es_projections_available
 *		The catalog, after checking that the projection objects exist (they
 *		were added in version 1.1).
 */
const EsCatalog *
es_projections_available(void)
{
	const EsCatalog *cat = es_catalog();

	if (!OidIsValid(cat->projections) || !OidIsValid(cat->dead_letters))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the installed version of extension \"event_sourcing\" has no projections"),
				 errhint("Run ALTER EXTENSION event_sourcing UPDATE.")));
	return cat;
}

/*
 * projection_cmp
 *		qsort comparator: projections by name.
 */
static int
projection_cmp(const void *a, const void *b)
{
	return strcmp(((const EsProjection *) a)->name, ((const EsProjection *) b)->name);
}

/*
 * load_inline
 *		Read the inline definitions into a new cache.
 *
 * Read with a fresh snapshot, not the transaction's: under REPEATABLE READ
 * the transaction snapshot may predate a definition whose invalidation made
 * us reload, and the cache outlives the transaction.
 */
static EsInlineCache *
load_inline(const EsCatalog *cat)
{
	EsInlineCache *c;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	Snapshot	snap;
	int			capacity = 4;
	MemoryContext cxt;
	MemoryContext old;

	cxt = AllocSetContextCreate(CacheMemoryContext, "event_sourcing inline projections",
								ALLOCSET_SMALL_SIZES);
	/* everything, the struct included, lives in cxt: see inline_projections */
	c = MemoryContextAllocZero(cxt, sizeof(EsInlineCache));
	c->cxt = cxt;
	c->generation = es_catalog_generation();
	c->projections = MemoryContextAlloc(c->cxt, sizeof(EsProjection) * capacity);

	rel = table_open(cat->projections, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		EsProjection p;

		es_projection_from_tuple(tup, RelationGetDescr(rel), &p, c->cxt);
		if (!p.is_inline)
			continue;
		if (c->n == capacity)
		{
			capacity *= 2;
			c->projections = repalloc(c->projections, sizeof(EsProjection) * capacity);
		}
		c->projections[c->n++] = p;
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);

	table_close(rel, AccessShareLock);

	rel = table_open(cat->events, AccessShareLock);
	old = MemoryContextSwitchTo(c->cxt);
	c->desc = CreateTupleDescCopy(RelationGetDescr(rel));
	MemoryContextSwitchTo(old);
	table_close(rel, AccessShareLock);
	qsort(c->projections, c->n, sizeof(EsProjection), projection_cmp);
	return c;
}

/*
 * inline_projections
 *		The current inline definitions, reloaded when the generation moved.
 */
static EsInlineCache *
inline_projections(const EsCatalog *cat)
{
	if (inline_cache != NULL && inline_cache->generation == es_catalog_generation())
		return inline_cache;

	if (inline_cache != NULL)
	{
		/* a dispatch further up the stack may still use it: free at commit */
		MemoryContextSetParent(inline_cache->cxt, TopTransactionContext);
		inline_cache = NULL;
	}
	inline_cache = load_inline(cat);
	/* loading may have processed invalidations; one reload is enough */
	inline_cache->generation = es_catalog_generation();
	return inline_cache;
}

PG_FUNCTION_INFO_V1(es_dispatch_inline);

/*
 * es_dispatch_inline() RETURNS trigger
 *
 * AFTER INSERT row trigger on es_events: hands the new event, upcast, to
 * each inline projection whose event types match, in name order.  Only
 * events es_append stores are dispatched (see es_append_firing).
 */
Datum
es_dispatch_inline(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const EsCatalog *cat;
	EsInlineCache *c;
	TupleTableSlot *slot;
	EsUpcaster *upcaster;
	bool		isnull;
	char	   *type;
	int64		position;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_es_dispatch_inline() must be called as an AFTER INSERT row trigger")));

	if (!es_append_firing())
		return PointerGetDatum(NULL);
	/* a 200,000-event batch fires this 200,000 times: stay cancellable */
	CHECK_FOR_INTERRUPTS();

	cat = es_catalog();
	if (!OidIsValid(cat->projections))
		return PointerGetDatum(NULL);
	c = inline_projections(cat);
	if (c->n == 0)
		return PointerGetDatum(NULL);

	/* a slot of our own: a handler that appends dispatches in between */
	slot = MakeSingleTupleTableSlot(c->desc, &TTSOpsHeapTuple);
	ExecStoreHeapTuple(trigdata->tg_trigtuple, slot, false);
	upcaster = es_upcast_begin();
	es_upcast_slot(upcaster, slot);
	es_upcast_end(upcaster);
	type = TextDatumGetCString(slot_getattr(slot, Anum_es_events_event_type, &isnull));
	position = DatumGetInt64(slot_getattr(slot, Anum_es_events_global_position, &isnull));

	/* a handler may append (nested dispatch) but not insert by other means */
	es_append_firing_suspend();
	for (int i = 0; i < c->n; i++)
	{
		EsProjection *p = &c->projections[i];

		if (!es_projection_matches(p, type))
			continue;
		if (!p->ready)
			es_projection_prepare(p, c->cxt);
		es_projection_apply(p, slot, position, false);
	}
	es_append_firing_resume();
	ExecDropSingleTupleTableSlot(slot);
	return PointerGetDatum(NULL);
}
