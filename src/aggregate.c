/*-------------------------------------------------------------------------
 *
 * aggregate.c
 *	  Aggregates defined in SQL: es_define_aggregate, es_aggregate,
 *	  es_aggregate_at and es_execute.
 *
 * An aggregate is defined per category by an evolve function
 * (state jsonb, event es_events) -> jsonb, an initial state, an optional
 * decide function (state jsonb, command jsonb) -> jsonb (a JSON array of new
 * events), and how often to snapshot.
 *
 * The fold starts from the newest usable snapshot at or below the target
 * version (snapshot.c), reads the rest of the stream with one index scan
 * (read.c) and calls evolve for each event through an FmgrInfo looked up once
 * per fold: no SQL is planned or run per event.  The state is kept in its own
 * memory context and copied only when evolve returns a new value, the way
 * nodeAgg.c keeps a transition value; everything else an evolve call
 * allocates is freed after each event.  After folding snapshot_every or more
 * events it stores a snapshot, except on a hot standby or in a read-only
 * transaction.
 *
 * Definitions are cached per backend and dropped whenever the catalog
 * generation moves (a redefinition anywhere, a function replaced, the
 * extension dropped); each fold copies what it needs, so a cache reset from
 * inside evolve cannot pull the definition from under a running fold.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "event_sourcing.h"

/* columns of es_aggregates */
#define Anum_es_aggregates_category			1
#define Anum_es_aggregates_evolve			2
#define Anum_es_aggregates_initial_state	3
#define Anum_es_aggregates_decide			4
#define Anum_es_aggregates_snapshot_every	5
#define Anum_es_aggregates_definition_id	6
#define Anum_es_aggregates_defined_at		7
#define Anum_es_aggregates_owner			8	/* 1.2 */
#define Anum_es_aggregates_search_path		9	/* 1.2 */

/* One aggregate definition, as cached. */
typedef struct EsAggDef
{
	char		category[ES_MAX_NAME_BYTES + 1];	/* hash key */
	Oid			evolve;
	Oid			decide;			/* InvalidOid: none */
	Jsonb	   *initial_state;
	int32		snapshot_every;
	int64		definition_id;
	Oid			owner;			/* evolve and decide run as this role */
	char	   *search_path;	/* ... with this search_path */
	int64		fingerprint;
} EsAggDef;

/* The result of a fold. */
typedef struct EsFoldResult
{
	int64		version;
	Jsonb	   *state;			/* NULL when evolve returned SQL NULL */
	int64		folded;			/* events passed to evolve */
} EsFoldResult;

static HTAB *defs = NULL;
static MemoryContext defs_cxt = NULL;
static uint64 defs_generation = 0;

/* the fold counter for tests and benchmarks: events folded by this backend */
static int64 events_folded = 0;

/*
 * read_definition
 *		Read the row of es_aggregates for a category into *def.
 */
static bool
read_definition(const char *category, EsAggDef *def)
{
	const EsCatalog *cat = es_catalog();
	Relation	rel;
	Relation	index;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	bool		found = false;

	rel = table_open(cat->aggregates, AccessShareLock);
	index = index_open(cat->aggregates_pkey, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ,
				CStringGetTextDatum(category));
	scan = systable_beginscan_ordered(rel, index, GetLatestSnapshot(), 1, &key);
	tup = systable_getnext_ordered(scan, ForwardScanDirection);
	if (HeapTupleIsValid(tup))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		Datum		d;

		def->evolve = DatumGetObjectId(heap_getattr(tup, Anum_es_aggregates_evolve, desc, &isnull));
		d = heap_getattr(tup, Anum_es_aggregates_decide, desc, &isnull);
		def->decide = isnull ? InvalidOid : DatumGetObjectId(d);
		def->initial_state = DatumGetJsonbPCopy(heap_getattr(tup, Anum_es_aggregates_initial_state, desc, &isnull));
		def->snapshot_every = DatumGetInt32(heap_getattr(tup, Anum_es_aggregates_snapshot_every, desc, &isnull));
		def->definition_id = DatumGetInt64(heap_getattr(tup, Anum_es_aggregates_definition_id, desc, &isnull));
		if (cat->owners)
		{
			def->owner = DatumGetObjectId(heap_getattr(tup, Anum_es_aggregates_owner, desc, &isnull));
			def->search_path = TextDatumGetCString(heap_getattr(tup, Anum_es_aggregates_search_path,
																desc, &isnull));
		}
		else
		{
			/* a 1.1 schema: what the update to 1.2 will record */
			def->owner = es_function_owner(def->evolve);
			if (!OidIsValid(def->owner))
				def->owner = cat->owner;
			def->search_path = pstrdup(ES_LEGACY_SEARCH_PATH);
		}
		found = true;
	}
	systable_endscan_ordered(scan);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * lookup_definition
 *		The aggregate definition of a category, copied into the caller's
 *		memory context.  When there is none: false if missing_ok, else 42704.
 */
static bool
lookup_definition(const char *category, int len, EsAggDef *out, bool missing_ok)
{
	char		key[ES_MAX_NAME_BYTES + 1];
	EsAggDef   *def;
	bool		found;

	if (defs == NULL || defs_generation != es_catalog_generation())
	{
		HASHCTL		ctl;

		if (defs_cxt == NULL)
			defs_cxt = AllocSetContextCreate(CacheMemoryContext,
											 "event_sourcing aggregate definitions",
											 ALLOCSET_SMALL_SIZES);
		else
			MemoryContextReset(defs_cxt);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(key);
		ctl.entrysize = sizeof(EsAggDef);
		ctl.hcxt = defs_cxt;
		defs = hash_create("event_sourcing aggregate definitions", 16, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		defs_generation = es_catalog_generation();
	}

	memset(key, 0, sizeof(key));
	memcpy(key, category, Min(len, ES_MAX_NAME_BYTES));

	def = (EsAggDef *) hash_search(defs, key, HASH_FIND, NULL);
	if (def == NULL)
	{
		EsAggDef	fresh;
		MemoryContext old;

		memset(&fresh, 0, sizeof(fresh));
		if (!read_definition(key, &fresh))
		{
			if (missing_ok)
				return false;
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("no aggregate is defined for category \"%s\"", key),
					 errhint("Define one with es_define_aggregate(%s, evolve_function).",
							 quote_literal_cstr(key))));
		}
		fresh.fingerprint = es_fingerprint(fresh.definition_id, fresh.evolve,
										   fresh.owner, fresh.search_path);

		/* the lookups above may have moved the generation: start over */
		if (defs_generation != es_catalog_generation())
			return lookup_definition(category, len, out, missing_ok);
		def = (EsAggDef *) hash_search(defs, key, HASH_ENTER, &found);
		old = MemoryContextSwitchTo(defs_cxt);
		memcpy(def->category, key, sizeof(key));
		def->evolve = fresh.evolve;
		def->decide = fresh.decide;
		def->initial_state = DatumGetJsonbPCopy(JsonbPGetDatum(fresh.initial_state));
		def->snapshot_every = fresh.snapshot_every;
		def->definition_id = fresh.definition_id;
		def->owner = fresh.owner;
		def->search_path = pstrdup(fresh.search_path);
		def->fingerprint = fresh.fingerprint;
		MemoryContextSwitchTo(old);
	}

	*out = *def;
	out->initial_state = DatumGetJsonbPCopy(JsonbPGetDatum(def->initial_state));
	out->search_path = pstrdup(def->search_path);
	return true;
}

/*
 * lookup_stream_definition
 *		The definition of the aggregate of a stream's category.
 */
static void
lookup_stream_definition(text *stream_id, EsAggDef *def)
{
	(void) lookup_definition(VARDATA_ANY(stream_id), es_category_len(stream_id), def, false);
}

/*
 * es_stream_fingerprint
 *		The fingerprint a snapshot of this stream must carry to be usable now:
 *		that of its category's aggregate, 0 when the category has none.
 */
int64
es_stream_fingerprint(text *stream_id)
{
	Oid			owner;

	return es_stream_aggregate(stream_id, &owner);
}

/*
 * es_stream_aggregate
 *		es_stream_fingerprint, and in *owner the aggregate's owner
 *		(InvalidOid when the category has no aggregate).
 */
int64
es_stream_aggregate(text *stream_id, Oid *owner)
{
	EsAggDef	def;

	*owner = InvalidOid;
	if (!lookup_definition(VARDATA_ANY(stream_id), es_category_len(stream_id), &def, true))
		return 0;
	*owner = def.owner;
	return def.fingerprint;
}

/*
 * aggregate_name
 *		"aggregate of category \"account\"", for messages.
 */
static char *
aggregate_name(const EsAggDef *def)
{
	return psprintf("aggregate of category \"%s\"", def->category);
}

/*
 * fold_gap_error
 *		A fold from version 'start' (0: the initial state) to 'target' found
 *		the next stored event only at 'found' (-1: none up to target):
 *		es_truncate_stream or retention removed the ones between, and no
 *		usable snapshot covers them (55000, constraint es_stream_truncated).
 *		Never fold on silently.
 */
static void
fold_gap_error(Relation rel, text *stream_id, int64 start, int64 target, int64 found)
{
	char	   *from = start > 0 ?
		psprintf("a snapshot at version " INT64_FORMAT, start) :
		pstrdup("the initial state (no usable snapshot exists)");

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot fold stream \"%s\" to version " INT64_FORMAT ": events it needs were removed",
					text_to_cstring(stream_id), target),
			 found > 0 ?
			 errdetail("The fold starts from %s, but the next stored event is version " INT64_FORMAT ".",
					   from, found) :
			 errdetail("The fold starts from %s, but no event of the stream up to version " INT64_FORMAT " is stored.",
					   from, target),
			 errhint("A truncated stream folds only from a snapshot at or after its truncation point; one made by an earlier definition of the aggregate does not count."),
			 errtableconstraint(rel, "es_stream_truncated")));
}

/*
 * fold
 *		The state of a stream at version 'target' (< 0: its current version;
 *		beyond the current version: the current version).
 */
static void
fold(EsAggDef *def, text *stream_id, int64 target, EsFoldResult *result)
{
	int64		current;
	int64		start;
	Jsonb	   *snap_state;
	EsCallback	evolve;
	EsStreamScan *scan;
	TupleTableSlot *slot;
	MemoryContext caller_cxt = CurrentMemoryContext;
	MemoryContext state_cxt;
	MemoryContext eval_cxt;
	Datum		state;
	bool		state_null = false;
	bool		state_owned = false;	/* state lives in state_cxt */
	int64		version;
	int64		next;			/* the version the next event must have */
	text	   *type;
	int64		folded = 0;
	EsUpcaster *upcaster;
	EsCallScope scope;

	LOCAL_FCINFO(fcinfo, 2);

	es_check_owner_can_run(def->owner, def->evolve, aggregate_name(def), "evolve");

	current = es_stream_head(stream_id, NULL);
	if (target < 0 || target > current)
		target = current;

	state_cxt = AllocSetContextCreate(caller_cxt, "event_sourcing fold state",
									  ALLOCSET_DEFAULT_SIZES);
	eval_cxt = AllocSetContextCreate(caller_cxt, "event_sourcing fold event",
									 ALLOCSET_DEFAULT_SIZES);

	if (target > 0 &&
		es_snapshot_find(stream_id, def->fingerprint, target, &start, &snap_state))
		state = JsonbPGetDatum(snap_state);
	else
	{
		start = 0;
		state = JsonbPGetDatum(def->initial_state);
	}
	version = start;
	next = start + 1;

	if (target > start)
	{
		es_callback_init(&evolve, def->evolve, caller_cxt);
		InitFunctionCallInfoData(*fcinfo, &evolve.flinfo, 2, InvalidOid, NULL, NULL);

		upcaster = es_upcast_begin();
		scan = es_stream_scan_begin(stream_id, start + 1, target, GetActiveSnapshot());
		/* evolve runs as the aggregate's owner, restricted (callback.c) */
		es_scope_enter(&scope, def->owner, def->search_path);
		while ((slot = es_stream_scan_next(scan)) != NULL)
		{
			MemoryContext old;
			Datum		newstate;
			bool		isnull;

			CHECK_FOR_INTERRUPTS();
			version = DatumGetInt64(slot_getattr(slot, Anum_es_events_stream_version, &isnull));
			type = DatumGetTextPP(slot_getattr(slot, Anum_es_events_event_type, &isnull));

			/*
			 * System events are not the aggregate's: a tombstone ends it, a
			 * redaction notice is passed over (lifecycle.c).
			 */
			if (ES_IS_SYSTEM_TYPE(VARDATA_ANY(type)))
			{
				if (es_is_tombstone(type))
					es_stream_deleted_error(scan->rel, stream_id, version,
											DatumGetTimestampTz(slot_getattr(slot, Anum_es_events_recorded_at, &isnull)));
				next = version + 1;
				continue;
			}
			/* a gap: truncation or retention removed what the fold needs */
			if (version != next)
				fold_gap_error(scan->rel, stream_id, start, target, version);
			next = version + 1;

			/* a strict evolve leaves a NULL state NULL, as a call would */
			if (state_null && evolve.strict)
				continue;

			old = MemoryContextSwitchTo(eval_cxt);
			es_upcast_slot(upcaster, slot);
			fcinfo->args[0].value = state;
			fcinfo->args[0].isnull = state_null;
			fcinfo->args[1].value = ExecFetchSlotHeapTupleDatum(slot);
			fcinfo->args[1].isnull = false;
			fcinfo->isnull = false;
			newstate = es_callback_call(&evolve, fcinfo);
			isnull = fcinfo->isnull;
			MemoryContextSwitchTo(old);

			/* keep the new state (unless evolve handed back the old one) */
			if (isnull)
			{
				if (state_owned)
					pfree(DatumGetPointer(state));
				state = (Datum) 0;
				state_null = true;
				state_owned = false;
			}
			else if (state_null || DatumGetPointer(newstate) != DatumGetPointer(state))
			{
				old = MemoryContextSwitchTo(state_cxt);
				newstate = PointerGetDatum(PG_DETOAST_DATUM_COPY(newstate));
				MemoryContextSwitchTo(old);
				if (state_owned)
					pfree(DatumGetPointer(state));
				state = newstate;
				state_null = false;
				state_owned = true;
			}
			MemoryContextReset(eval_cxt);
			folded++;
		}
		es_scope_exit(&scope);
		/* the events up to the target were removed (and none after them) */
		if (next <= target)
			fold_gap_error(scan->rel, stream_id, start, target, -1);
		es_stream_scan_end(scan);
		es_upcast_end(upcaster);
	}
	events_folded += folded;

	result->version = version;
	result->folded = folded;
	if (state_null)
		result->state = NULL;
	else
	{
		MemoryContext old = MemoryContextSwitchTo(caller_cxt);

		result->state = DatumGetJsonbPCopy(state);
		MemoryContextSwitchTo(old);
	}
	MemoryContextDelete(eval_cxt);
	MemoryContextDelete(state_cxt);

	/* store a snapshot where one pays, and where writing is allowed */
	if (def->snapshot_every > 0 && folded >= def->snapshot_every &&
		result->state != NULL && !RecoveryInProgress() && !XactReadOnly)
		es_snapshot_store(stream_id, result->version, def->fingerprint, def->owner,
						  result->state);
}

/*
 * return_state
 *		Return (version, state) as the one row of a TABLE function.
 */
static Datum
return_state(FunctionCallInfo fcinfo, EsFoldResult *r)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	InitMaterializedSRF(fcinfo, 0);
	values[0] = Int64GetDatum(r->version);
	if (r->state == NULL)
		nulls[1] = true;
	else
		values[1] = JsonbPGetDatum(r->state);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(es_aggregate);

/*
 * es_aggregate(stream_id text, to_version bigint DEFAULT NULL)
 *		RETURNS TABLE(version bigint, state jsonb)
 *
 * The stream's state at to_version (NULL: now): folded from the newest usable
 * snapshot.  A stream with no events gives version 0 and the initial state.
 */
Datum
es_aggregate(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	int64		target = -1;
	EsAggDef	def;
	EsFoldResult r;

	es_check_not_null(fcinfo, 0, "stream_id");
	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(stream_id);
	if (!PG_ARGISNULL(1))
	{
		target = PG_GETARG_INT64(1);
		if (target < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("to_version must not be negative"),
					 errdetail("to_version was " INT64_FORMAT ".", target),
					 errhint("Pass NULL for the current state, 0 for the initial state.")));
	}

	lookup_stream_definition(stream_id, &def);
	fold(&def, stream_id, target, &r);
	return return_state(fcinfo, &r);
}

PG_FUNCTION_INFO_V1(es_aggregate_at);

/*
 * es_aggregate_at(stream_id text, as_of timestamptz)
 *		RETURNS TABLE(version bigint, state jsonb)
 *
 * The stream's state as of a point in time: folded to the last version
 * recorded at or before as_of.
 */
Datum
es_aggregate_at(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	TimestampTz as_of;
	EsAggDef	def;
	EsFoldResult r;

	es_check_not_null(fcinfo, 0, "stream_id");
	es_check_not_null(fcinfo, 1, "as_of");
	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(stream_id);
	as_of = PG_GETARG_TIMESTAMPTZ(1);

	lookup_stream_definition(stream_id, &def);
	fold(&def, stream_id, es_stream_head(stream_id, &as_of), &r);
	return return_state(fcinfo, &r);
}

PG_FUNCTION_INFO_V1(es_execute);

/*
 * command_replayed
 *		Was the command with this id executed already?  Its events carry ids
 *		derived from it (uuidv7.c): when the first is stored in this stream,
 *		returns the version of the last of them (the version the first
 *		execution returned); when in another stream, the id was reused
 *		(23505); else -1.
 */
static int64
command_replayed(text *stream_id, const pg_uuid_t *command_id)
{
	int64		version = -1;

	for (int i = 0;; i++)
	{
		pg_uuid_t	id;
		text	   *stream;
		int64		v;

		CHECK_FOR_INTERRUPTS();
		es_uuid_for_command(command_id, i, &id);
		if (!es_event_location(&id, &stream, &v))
			return version;
		if (VARSIZE_ANY_EXHDR(stream) != VARSIZE_ANY_EXHDR(stream_id) ||
			memcmp(VARDATA_ANY(stream), VARDATA_ANY(stream_id), VARSIZE_ANY_EXHDR(stream_id)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("command %s was executed on another stream",
							DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(command_id)))),
					 errdetail("Its events are stored in stream \"%s\".", text_to_cstring(stream)),
					 errhint("A command id identifies one command on one stream; generate a new one for each command.")));
		version = v;
	}
}

/*
 * es_execute(stream_id text, command jsonb,
 *			  expected_version bigint DEFAULT NULL,
 *			  command_id uuid DEFAULT NULL) RETURNS bigint
 *
 * Folds the stream (as of now, not as of the transaction's snapshot), asks
 * decide(state, command) for new events and appends them with the folded
 * version as the expected version: a concurrent append in between raises the
 * same 40001 as es_append.  A decide that raises a domain error stores
 * nothing.  Returns the stream's new version (the folded version when decide
 * returns no events).
 *
 * With expected_version, the command is refused with 40001 unless the
 * stream is at that version (If-Match).  With command_id, the events' ids
 * derive from it: a command that was executed already is recognised before
 * deciding and returns the version its first execution returned.  (1.4's
 * es_execute(text, jsonb) calls this with two arguments.)
 */
Datum
es_execute(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	Jsonb	   *command;
	EsAggDef	def;
	EsFoldResult r;
	EsCallback	decide;
	Datum		events;
	Jsonb	   *events_jb;
	EsCallScope scope;
	bool		any_version = PG_NARGS() < 3 || PG_ARGISNULL(2);
	int64		expected = any_version ? 0 : PG_GETARG_INT64(2);
	pg_uuid_t  *command_id = (PG_NARGS() < 4 || PG_ARGISNULL(3)) ? NULL : PG_GETARG_UUID_P(3);

	LOCAL_FCINFO(dcinfo, 2);

	es_check_not_null(fcinfo, 0, "stream_id");
	es_check_not_null(fcinfo, 1, "command");
	stream_id = PG_GETARG_TEXT_PP(0);
	es_check_stream_id(stream_id);
	command = PG_GETARG_JSONB_P(1);
	if (!any_version)
		es_check_expected_range(expected);
	PreventCommandIfReadOnly("es_execute()");

	lookup_stream_definition(stream_id, &def);
	if (!OidIsValid(def.decide))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the aggregate of category \"%s\" has no decide function",
						def.category),
				 errhint("Pass a decide function to es_define_aggregate.")));
	es_check_owner_can_run(def.owner, def.decide, aggregate_name(&def), "decide");

	/*
	 * Decide on the latest state, this transaction's own earlier appends
	 * included (even from the same statement), whatever the isolation level:
	 * the append below checks against the latest version anyway, so deciding
	 * on an older snapshot could only fail.
	 */
	CommandCounterIncrement();

	/* a command executed already: its result, whatever the stream did since */
	if (command_id != NULL)
	{
		int64		replayed = command_replayed(stream_id, command_id);

		if (replayed >= 0)
			PG_RETURN_INT64(replayed);
	}

	PushActiveSnapshot(GetLatestSnapshot());
	fold(&def, stream_id, -1, &r);
	PopActiveSnapshot();

	/* If-Match: the client decided on a version the stream no longer has */
	if (!any_version)
	{
		Relation	rel = table_open(es_catalog()->events, AccessShareLock);

		es_check_expected_version(rel, stream_id, false, expected, r.version);
		table_close(rel, AccessShareLock);
	}

	es_callback_init(&decide, def.decide, CurrentMemoryContext);
	if (r.state == NULL && decide.strict)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the state of stream \"%s\" is null", text_to_cstring(stream_id)),
				 errdetail("The evolve function returned NULL, and decide is strict."),
				 errhint("Make evolve return a JSON value for every event.")));
	InitFunctionCallInfoData(*dcinfo, &decide.flinfo, 2, InvalidOid, NULL, NULL);
	dcinfo->args[0].value = r.state ? JsonbPGetDatum(r.state) : (Datum) 0;
	dcinfo->args[0].isnull = (r.state == NULL);
	dcinfo->args[1].value = JsonbPGetDatum(command);
	dcinfo->args[1].isnull = false;
	/* decide runs as the aggregate's owner; the append below as the caller */
	es_scope_enter(&scope, def.owner, def.search_path);
	events = es_callback_invoke(dcinfo);
	es_scope_exit(&scope);
	if (dcinfo->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("decide function %s returned null", format_procedure(def.decide)),
				 errhint("Return a JSON array of new events, [] for a command that changes nothing, or raise an error to refuse the command.")));
	events_jb = DatumGetJsonbP(events);

	/* nothing to record */
	if (JB_ROOT_IS_ARRAY(events_jb) && !JB_ROOT_IS_SCALAR(events_jb) &&
		JB_ROOT_COUNT(events_jb) == 0)
		PG_RETURN_INT64(r.version);

	PG_RETURN_INT64(es_append_batch_jsonb(stream_id, false, r.version, events_jb, command_id));
}

PG_FUNCTION_INFO_V1(es_define_aggregate);

/*
 * es_define_aggregate(category text, evolve regprocedure,
 *					   initial_state jsonb DEFAULT '{}',
 *					   decide regprocedure DEFAULT NULL,
 *					   snapshot_every int DEFAULT 100) RETURNS void
 *
 * Defines (or redefines) the aggregate of a category.  The functions'
 * signatures and the caller's EXECUTE privilege on them are checked now.
 * The caller becomes the owner (evolve and decide run as it, with the
 * caller's search_path as it is now); redefining needs membership in the
 * owner, who stays the owner.  Redefinition makes every older snapshot of
 * the category unusable.
 */
Datum
es_define_aggregate(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat;
	text	   *category;
	Oid			evolve;
	Oid			decide = InvalidOid;
	int32		snapshot_every;
	Oid			evolve_args[2];
	Oid			decide_args[2] = {JSONBOID, JSONBOID};
	char	   *sql;
	EsAggDef	existing;
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			types[8] = {TEXTOID, REGPROCEDUREOID, JSONBOID, REGPROCEDUREOID, INT4OID, INT8OID,
	REGROLEOID, TEXTOID};

	es_check_not_null(fcinfo, 0, "category");
	es_check_not_null(fcinfo, 1, "evolve");
	es_check_not_null(fcinfo, 2, "initial_state");
	es_check_not_null(fcinfo, 4, "snapshot_every");
	category = PG_GETARG_TEXT_PP(0);
	es_check_category(category);
	evolve = PG_GETARG_OID(1);
	snapshot_every = PG_GETARG_INT32(4);
	if (snapshot_every < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("snapshot_every must not be negative"),
				 errdetail("snapshot_every was %d.", snapshot_every),
				 errhint("Use 0 to never store snapshots.")));
	PreventCommandIfReadOnly("es_define_aggregate()");

	cat = es_catalog();
	/* only the owner's members may redefine: checked before anything is locked */
	memset(&existing, 0, sizeof(existing));
	if (read_definition(text_to_cstring(category), &existing))
	{
		snprintf(existing.category, sizeof(existing.category), "%s", text_to_cstring(category));
		es_check_member(existing.owner, aggregate_name(&existing));
	}

	evolve_args[0] = JSONBOID;
	evolve_args[1] = get_rel_type_id(cat->events);
	es_check_callback(evolve, "evolve", 2, evolve_args, JSONBOID);
	if (!PG_ARGISNULL(3))
	{
		decide = PG_GETARG_OID(3);
		es_check_callback(decide, "decide", 2, decide_args, JSONBOID);
	}

	values[0] = PointerGetDatum(category);
	values[1] = ObjectIdGetDatum(evolve);
	values[2] = PG_GETARG_DATUM(2);
	values[3] = ObjectIdGetDatum(decide);
	if (!OidIsValid(decide))
		nulls[3] = 'n';
	values[4] = Int32GetDatum(snapshot_every);
	values[5] = Int64GetDatum(nextval_internal(cat->aggregate_seq, false));
	values[6] = ObjectIdGetDatum(GetUserId());
	values[7] = CStringGetTextDatum(es_capture_search_path());

	/*
	 * The owner stays; a definition made by someone else in the meantime is
	 * only replaced if the caller is a member of its owner too.  (A schema
	 * before 1.2 has no owner columns: the update gives such rows the owner
	 * of evolve.)
	 */
	if (!cat->owners)
		sql = psprintf("INSERT INTO %s AS a (category, evolve, initial_state, decide, snapshot_every, "
					   "definition_id) "
					   "VALUES ($1, $2, $3, $4, $5, $6) "
					   "ON CONFLICT (category) DO UPDATE SET evolve = EXCLUDED.evolve, "
					   "initial_state = EXCLUDED.initial_state, decide = EXCLUDED.decide, "
					   "snapshot_every = EXCLUDED.snapshot_every, definition_id = EXCLUDED.definition_id, "
					   "defined_at = EXCLUDED.defined_at "
					   "WHERE $7 IS NOT NULL AND $8 IS NOT NULL",
					   es_qualified_name("es_aggregates"));
	else
		sql = psprintf("INSERT INTO %s AS a (category, evolve, initial_state, decide, snapshot_every, "
				   "definition_id, owner, search_path) "
				   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
				   "ON CONFLICT (category) DO UPDATE SET evolve = EXCLUDED.evolve, "
				   "initial_state = EXCLUDED.initial_state, decide = EXCLUDED.decide, "
				   "snapshot_every = EXCLUDED.snapshot_every, definition_id = EXCLUDED.definition_id, "
				   "defined_at = EXCLUDED.defined_at, search_path = EXCLUDED.search_path "
				   "WHERE pg_catalog.pg_has_role($7::pg_catalog.oid, a.owner::pg_catalog.oid, 'USAGE')",
				   es_qualified_name("es_aggregates"));
	if (es_execute_as_owner(sql, 8, types, values, nulls, SPI_OK_INSERT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for aggregate of category \"%s\"",
						text_to_cstring(category)),
				 errdetail("Another role defined it concurrently; only members of its owner may redefine it.")));

	/* every backend (this one at the next command) drops its cached definitions */
	CacheInvalidateRelcacheByRelid(es_catalog()->aggregates);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_fold_count);

/*
 * es_fold_count() RETURNS bigint
 *
 * How many events this backend has passed to evolve functions: evidence,
 * independent of timing, of how much a fold did (tests, benchmarks).
 */
Datum
es_fold_count(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(events_folded);
}
