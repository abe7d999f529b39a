/*-------------------------------------------------------------------------
 *
 * upcast.c
 *	  Event schema evolution: the upcaster registry and the one upcasting
 *	  step every read path goes through.
 *
 * An upcaster turns the data of one event type from schema n into schema
 * n + 1, and may rename the type.  Chains per type start at 1 and have no
 * gaps; a renaming step ends its type's chain, and the event continues as
 * the new type at schema 1 (so the new type's own upcasters apply to it).
 * Stored rows never change: es_load, es_read_all, es_read_category, the fold
 * of es_aggregate (and projections) upcast as they read.
 *
 * Each step runs as the role that registered it, restricted, with the
 * search_path it was registered with (callback.c): an upcaster never runs
 * as the reader, nor as the background worker.  Steps are called through
 * es_callback_call: a SQL function whose body is one expression is
 * evaluated as that expression (inline.c), without an executor per call.
 * A type's chain belongs to the owner of its first step: only members of
 * that role may extend it.
 *
 * The registry is small and read whole into a per-backend cache, rebuilt
 * when the catalog generation moves (es_define_upcaster invalidates it in
 * every backend).  When no upcaster exists at all, reads and appends pay one
 * flag test.  A read pins the cache for its duration: a rebuild requested
 * from inside an upcaster (or a nested read) leaves the pinned copy, struct
 * and all (everything lives in its own memory context), alive until the
 * transaction ends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tupmacs.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
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
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "event_sourcing.h"

/* columns of es_upcasters */
#define Anum_es_upcasters_event_type	1
#define Anum_es_upcasters_from_schema	2
#define Anum_es_upcasters_upcast		3
#define Anum_es_upcasters_to_type		4
#define Anum_es_upcasters_defined_at	5
#define Anum_es_upcasters_owner			6	/* 1.2 */
#define Anum_es_upcasters_search_path	7	/* 1.2 */

/* a chain longer than this is a cycle of renames */
#define ES_MAX_UPCAST_STEPS 1000

/* One step: from_schema -> from_schema + 1 (index in steps = from_schema - 1). */
typedef struct EsUpcastStep
{
	Oid			fn;
	EsCallback	cb;				/* its calls, inlined when it is one expression */
	char	   *to_type;		/* NULL: keeps the type */
	Oid			owner;			/* runs as this role */
	char	   *search_path;	/* ... with this search_path */
	bool		checked;		/* the owner's EXECUTE was checked */
	bool		missing;		/* the function was dropped */
} EsUpcastStep;

/* The chain of one event type. */
typedef struct EsUpcastChain
{
	char		event_type[ES_MAX_NAME_BYTES + 1];	/* hash key */
	int			nsteps;			/* current schema = nsteps + 1 */
	int			capacity;
	EsUpcastStep *steps;
} EsUpcastChain;

/* The registry as cached. */
typedef struct EsUpcastCache
{
	MemoryContext cxt;
	HTAB	   *chains;			/* NULL when there is no upcaster */
	/* the last type looked up, and its chain: events come in runs of a type */
	char		last_type[ES_MAX_NAME_BYTES + 1];
	int			last_len;		/* -1: none yet */
	EsUpcastChain *last_chain;
	uint64		fingerprint;	/* of the whole registry, 0 when empty */
	uint64		generation;
	int			pins;
	/* where an event's steps compute, reset after each event (when not busy) */
	MemoryContext work;
	bool		work_busy;
} EsUpcastCache;

static EsUpcastCache *cache = NULL;

/*
 * load_cache
 *		Read every row of es_upcasters into a new cache.
 */
static EsUpcastCache *
load_cache(void)
{
	const EsCatalog *cat = es_catalog();
	EsUpcastCache *c;
	MemoryContext cxt;
	MemoryContext old;
	Relation	rel;
	Relation	index;
	SysScanDesc scan;
	HeapTuple	tup;
	HASHCTL		ctl;
	uint64		generation = es_catalog_generation();
	List	   *paths = NIL;	/* the distinct search_paths, in cxt */

	cxt = AllocSetContextCreate(CacheMemoryContext, "event_sourcing upcasters",
								ALLOCSET_SMALL_SIZES);
	/* the struct too: a stale cache is freed whole, by deleting cxt */
	c = MemoryContextAllocZero(cxt, sizeof(EsUpcastCache));
	c->cxt = cxt;
	c->generation = generation;
	c->last_len = -1;
	c->work = AllocSetContextCreate(cxt, "event_sourcing upcasting",
									ALLOCSET_DEFAULT_SIZES);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = ES_MAX_NAME_BYTES + 1;
	ctl.entrysize = sizeof(EsUpcastChain);
	ctl.hcxt = c->cxt;

	rel = table_open(cat->upcasters, AccessShareLock);
	index = index_open(cat->upcasters_pkey, AccessShareLock);
	/* ordered by (event_type, from_schema): steps arrive in chain order */
	scan = systable_beginscan_ordered(rel, index, GetLatestSnapshot(), 0, NULL);
	while ((tup = systable_getnext_ordered(scan, ForwardScanDirection)) != NULL)
	{
		TupleDesc	desc = RelationGetDescr(rel);
		char		key[ES_MAX_NAME_BYTES + 1];
		char	   *type;
		int32		from;
		Datum		d;
		bool		isnull;
		bool		found;
		EsUpcastChain *chain;
		EsUpcastStep *step;

		if (c->chains == NULL)
			c->chains = hash_create("event_sourcing upcasters", 16, &ctl,
									HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

		type = TextDatumGetCString(heap_getattr(tup, Anum_es_upcasters_event_type, desc, &isnull));
		memset(key, 0, sizeof(key));
		strlcpy(key, type, sizeof(key));
		from = DatumGetInt32(heap_getattr(tup, Anum_es_upcasters_from_schema, desc, &isnull));

		chain = hash_search(c->chains, key, HASH_ENTER, &found);
		if (!found)
		{
			chain->nsteps = 0;
			chain->capacity = 4;
			chain->steps = MemoryContextAllocZero(c->cxt, sizeof(EsUpcastStep) * chain->capacity);
		}
		if (from != chain->nsteps + 1)
			elog(ERROR, "upcaster chain of event type \"%s\" has a gap before schema %d",
				 key, from);
		if (chain->nsteps == chain->capacity)
		{
			chain->capacity *= 2;
			chain->steps = repalloc(chain->steps, sizeof(EsUpcastStep) * chain->capacity);
		}

		step = &chain->steps[chain->nsteps++];
		step->fn = DatumGetObjectId(heap_getattr(tup, Anum_es_upcasters_upcast, desc, &isnull));
		/* a dropped function breaks only the reads that need this step */
		step->missing = !SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(step->fn));
		if (!step->missing)
			es_callback_init(&step->cb, step->fn, c->cxt);
		d = heap_getattr(tup, Anum_es_upcasters_to_type, desc, &isnull);
		old = MemoryContextSwitchTo(c->cxt);
		step->to_type = isnull ? NULL : TextDatumGetCString(d);
		if (cat->owners)
		{
			step->owner = DatumGetObjectId(heap_getattr(tup, Anum_es_upcasters_owner, desc, &isnull));
			step->search_path = TextDatumGetCString(heap_getattr(tup, Anum_es_upcasters_search_path,
																 desc, &isnull));
		}
		else
		{
			/* a 1.1 schema: what the update to 1.2 will record */
			step->owner = step->missing ? InvalidOid : es_function_owner(step->fn);
			if (!OidIsValid(step->owner))
				step->owner = cat->owner;
			step->search_path = pstrdup(ES_LEGACY_SEARCH_PATH);
		}
		/*
		 * Steps with the same search_path share one string, so that a read
		 * holding their scope sees the same one by its address
		 * (es_scope_hold_enter) rather than by comparing the strings.
		 */
		{
			ListCell   *lc;

			foreach(lc, paths)
			{
				if (strcmp((char *) lfirst(lc), step->search_path) == 0)
				{
					pfree(step->search_path);
					step->search_path = (char *) lfirst(lc);
					break;
				}
			}
			if (lc == NULL)
				paths = lappend(paths, step->search_path);
		}
		MemoryContextSwitchTo(old);
		step->checked = false;

		/* what every fold depends on: the steps and what their functions do */
		c->fingerprint = hash_combine64(c->fingerprint,
										hash_bytes_extended((const unsigned char *) key, strlen(key), from));
		c->fingerprint = hash_combine64(c->fingerprint,
										step->missing ? (uint64) step->fn : es_function_fingerprint(step->fn));
		if (step->to_type)
			c->fingerprint = hash_combine64(c->fingerprint,
											hash_bytes_extended((const unsigned char *) step->to_type,
																strlen(step->to_type), 0));
		/* who it runs as, and how it resolves names, decide what it does */
		c->fingerprint = hash_combine64(c->fingerprint, (uint64) step->owner);
		c->fingerprint = hash_combine64(c->fingerprint,
										hash_bytes_extended((const unsigned char *) step->search_path,
															strlen(step->search_path), 0));
	}
	systable_endscan_ordered(scan);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return c;
}

/*
 * current_cache
 *		The cache, rebuilt first if the catalog generation moved.  A pinned
 *		stale cache is handed to the transaction to free at its end.
 */
static EsUpcastCache *
current_cache(void)
{
	if (cache != NULL && cache->generation == es_catalog_generation())
		return cache;
	if (cache != NULL)
	{
		/* a pinned cache is in use further up the stack: free it at commit */
		if (cache->pins > 0)
			MemoryContextSetParent(cache->cxt, TopTransactionContext);
		else
			MemoryContextDelete(cache->cxt);
		cache = NULL;
	}
	cache = load_cache();
	return cache;
}

/*
 * find_chain
 *		The chain of an event type, NULL when it has none.
 */
static EsUpcastChain *
find_chain(EsUpcastCache *c, const char *type, int len)
{
	char		key[ES_MAX_NAME_BYTES + 1];

	if (c->chains == NULL || len > ES_MAX_NAME_BYTES)
		return NULL;
	if (len == c->last_len && memcmp(type, c->last_type, len) == 0)
		return c->last_chain;
	memset(key, 0, sizeof(key));
	memcpy(key, type, len);
	c->last_chain = hash_search(c->chains, key, HASH_FIND, NULL);
	memcpy(c->last_type, type, len);
	c->last_len = len;
	return c->last_chain;
}

/*
 * es_current_schema
 *		The schema version an event of this type is written in now: 1 plus
 *		the length of the type's chain (the renaming step's schema when the
 *		chain ends with a rename).
 */
int32
es_current_schema(text *event_type)
{
	EsUpcastCache *c = current_cache();
	EsUpcastChain *chain;

	if (c->chains == NULL)
		return 1;
	chain = find_chain(c, VARDATA_ANY(event_type), VARSIZE_ANY_EXHDR(event_type));
	if (chain == NULL)
		return 1;
	/*
	 * A writer still using a renamed-away type writes that type's last
	 * shape: record it at the renaming step, so readers see it renamed.
	 */
	if (chain->steps[chain->nsteps - 1].to_type != NULL)
		return chain->nsteps;
	return chain->nsteps + 1;
}

/*
 * es_upcast_fingerprint
 *		A hash of the whole upcaster registry (0 when it is empty).  Folds
 *		see upcast events, so a snapshot is only as good as the upcasters it
 *		was folded with: es_fingerprint mixes this in.
 */
uint64
es_upcast_fingerprint(void)
{
	return current_cache()->fingerprint;
}

/*
 * es_upcast_begin
 *		Pin the registry for one read; NULL when there are no upcasters (the
 *		caller then passes events through untouched).
 */
EsUpcaster *
es_upcast_begin(void)
{
	EsUpcastCache *c = current_cache();

	if (c->chains == NULL)
		return NULL;
	c->pins++;
	return (EsUpcaster *) c;
}

/*
 * es_upcast_end
 *		Unpin what es_upcast_begin pinned.
 */
void
es_upcast_end(EsUpcaster *u)
{
	EsUpcastCache *c = (EsUpcastCache *) u;

	if (c != NULL && c->pins > 0)
		c->pins--;
}

/*
 * upcast_data
 *		Run the steps of chain from 'schema' on over data: the new data,
 *		with *type and *schema moved to where the event ends.  Allocates in
 *		the current memory context.
 */
static Datum
upcast_data(EsUpcastCache *c, EsUpcastChain *chain, Datum data, text **type,
			int32 *schema, EsScopeHold *hold)
{
	int			steps = 0;
	EsCallScope scope;

	LOCAL_FCINFO(fcinfo, 1);

	/*
	 * A nested read inside an upcaster may replace the registry; this one
	 * stays pinned (and alive) until we return.
	 */
	while (chain != NULL && *schema >= 1 && *schema <= chain->nsteps)
	{
		EsUpcastStep *step = &chain->steps[*schema - 1];

		if (++steps > ES_MAX_UPCAST_STEPS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_RECURSION),
					 errmsg("upcasting event type \"%s\" did not end after %d steps",
							chain->event_type, ES_MAX_UPCAST_STEPS),
					 errhint("Renaming upcasters form a cycle; check es_upcasters.")));

		if (step->missing)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("the upcaster of event type \"%s\" from schema %d no longer exists",
							chain->event_type, *schema),
					 errdetail("Its function (OID %u) was dropped.", step->fn),
					 errhint("Create the function again and, as the extension's owner, point the "
							 "es_upcasters row at it: UPDATE es_upcasters SET upcast = 'name(jsonb)' "
							 "WHERE event_type = %s AND from_schema = %d.",
							 quote_literal_cstr(chain->event_type), *schema)));

		/* the owner's EXECUTE is checked once per cache, when first used */
		if (!step->checked)
		{
			es_check_owner_can_run(step->owner, step->fn,
								   psprintf("the upcaster of event type \"%s\" from schema %d",
											chain->event_type, *schema),
								   "upcast");
			step->checked = true;
		}

		/*
		 * As the owner, with its search_path; a SQL function whose body is
		 * one expression is evaluated as that expression (inline.c).
		 */
		InitFunctionCallInfoData(*fcinfo, &step->cb.flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = data;
		fcinfo->args[0].isnull = false;
		if (hold != NULL)
		{
			/* the reader holds the scope across events (callback.c) */
			es_scope_hold_enter(hold, step->owner, step->search_path);
			data = es_callback_call(&step->cb, fcinfo);
		}
		else
		{
			es_scope_enter(&scope, step->owner, step->search_path);
			data = es_callback_call(&step->cb, fcinfo);
			es_scope_exit(&scope);
		}
		if (fcinfo->isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("upcaster %s returned null", format_procedure(step->fn)),
					 errdetail("It was upcasting event type \"%s\" from schema %d.",
							   chain->event_type, *schema)));
		if (!JB_ROOT_IS_OBJECT(DatumGetJsonbP(data)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("upcaster %s did not return a JSON object", format_procedure(step->fn)),
					 errdetail("It was upcasting event type \"%s\" from schema %d.",
							   chain->event_type, *schema)));
		if (step->to_type != NULL)
		{
			/* a rename ends this chain; continue as the new type, schema 1 */
			*type = cstring_to_text(step->to_type);
			chain = find_chain(c, step->to_type, strlen(step->to_type));
			*schema = 1;
		}
		else
			(*schema)++;
	}
	return data;
}

/*
 * upcast_event
 *		The upcasting of one event, up to its new values: if the event in
 *		slot has upcasters for its schema, run them and return true with its
 *		new data, type and schema in *data, *type and *schema (allocated in
 *		*work), every column of the slot deformed; false, leaving the slot
 *		untouched, when there is nothing to do.  The caller stores the new
 *		values, then hands *work and *own_work to upcast_release.
 *
 * The steps compute in a context of the registry's, reset after each event
 * (upcast_release): what they allocate besides the result (all of it, for
 * an expression evaluated in place) does not pile up in the caller's
 * context, which for es_load lives as long as the whole read.  A nested
 * read (inside an upcaster) finds it busy and uses a context of its own.
 */
static bool
upcast_event(EsUpcastCache *c, TupleTableSlot *slot, EsScopeHold *hold,
			 Datum *data, text **type, int32 *schema,
			 MemoryContext *work, bool *own_work)
{
	EsUpcastChain *chain;
	bool		isnull;
	MemoryContext caller = CurrentMemoryContext;

	if (c == NULL)
		return false;

	/* the type first: most types have no upcaster, and it comes before schema */
	*type = DatumGetTextPP(slot_getattr(slot, Anum_es_events_event_type, &isnull));
	chain = find_chain(c, VARDATA_ANY(*type), VARSIZE_ANY_EXHDR(*type));
	if (chain == NULL)
		return false;
	/* schema_version is the last column: this deforms the whole row */
	*schema = DatumGetInt32(slot_getattr(slot, Anum_es_events_schema_version, &isnull));
	if (*schema > chain->nsteps || *schema < 1)
		return false;
	slot_getallattrs(slot);
	*data = slot->tts_values[Anum_es_events_data - 1];

	*own_work = c->work_busy;
	if (*own_work)
		*work = AllocSetContextCreate(caller, "event_sourcing nested upcasting",
									  ALLOCSET_DEFAULT_SIZES);
	else
	{
		*work = c->work;
		c->work_busy = true;
	}
	MemoryContextSwitchTo(*work);
	PG_TRY();
	{
		*data = upcast_data(c, chain, *data, type, schema, hold);
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(caller);
		if (!*own_work)
			c->work_busy = false;
	}
	PG_END_TRY();
	return true;
}

/*
 * upcast_release
 *		Free what one event's upcasting allocated (upcast_event), once its
 *		new values are stored.
 */
static void
upcast_release(EsUpcastCache *c, MemoryContext work, bool own_work)
{
	if (own_work)
		MemoryContextDelete(work);
	else
		MemoryContextReset(work);
}

/*
 * splice_row
 *		The upcast event's row as a heap tuple in the current memory context,
 *		from the stored tuple: the bytes of the columns before 'first' (the
 *		first column upcasting changed, 1-based) copied as they are, since
 *		their places do not change, and the columns from 'first' on laid out
 *		from the slot's values (upcast ones in place), as heap_form_tuple
 *		lays them out.  NULL, for the caller to form the row from the values,
 *		when it takes more than that: a null, a value stored out of line or
 *		expanded, a dropped column, a stored tuple from before a column was
 *		added, or a pass-by-value column just before 'first'.
 *
 * Forming the whole row from its values (heap_form_tuple) took about 7 % of
 * an es_load through a cheap 2-step chain, several times a copy; most of an
 * event (position, stream, version, id, type) lies before its data.
 */
static HeapTuple
splice_row(TupleTableSlot *slot, HeapTuple stored, int first)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	int			natts = desc->natts;
	HeapTupleHeader old = stored->t_data;
	Form_pg_attribute prev;
	char	   *olddata;
	char	   *prevptr;
	Size		prefix;
	Size		len;
	Size		off;
	Size		hoff;
	uint16		infomask;
	HeapTuple	tuple;
	HeapTupleHeader td;
	char	   *data;

	if (first < 2 || first > natts ||
		HeapTupleHasNulls(stored) || HeapTupleHasExternal(stored) ||
		HeapTupleHeaderGetNatts(old) != natts)
		return NULL;
	prev = TupleDescAttr(desc, first - 2);
	if (prev->attbyval || prev->attisdropped || prev->attlen == -2)
		return NULL;

	/* the prefix: up to the end of the column before first, in the stored tuple */
	olddata = (char *) old + old->t_hoff;
	prevptr = DatumGetPointer(slot->tts_values[first - 2]);
	if (prevptr < olddata || prevptr >= olddata + (stored->t_len - old->t_hoff))
		return NULL;
	prefix = (prevptr - olddata) + (prev->attlen == -1 ? VARSIZE_ANY(prevptr) : (Size) prev->attlen);

	/* the size, as heap_compute_data_size computes it */
	len = prefix;
	infomask = old->t_infomask & HEAP_HASVARWIDTH;
	for (int i = first - 1; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Datum		val = slot->tts_values[i];

		if (slot->tts_isnull[i] || att->attisdropped || att->attlen == -2)
			return NULL;
		if (att->attlen == -1)
		{
			Pointer		p = DatumGetPointer(val);

			if (VARATT_IS_EXTERNAL(p))
				return NULL;
			infomask |= HEAP_HASVARWIDTH;
			if (VARATT_IS_SHORT(p))
				len += VARSIZE_SHORT(p);
			else if (att->attstorage != TYPSTORAGE_PLAIN && VARATT_CAN_MAKE_SHORT(p))
				len += VARATT_CONVERTED_SHORT_SIZE(p);
			else
				len = att_align_nominal(len, att->attalign) + VARSIZE(p);
		}
		else
			len = att_align_nominal(len, att->attalign) + att->attlen;
	}

	/* the header, as heap_form_tuple makes it (no null bitmap) */
	hoff = MAXALIGN(SizeofHeapTupleHeader);
	tuple = (HeapTuple) palloc0(HEAPTUPLESIZE + hoff + len);
	tuple->t_len = hoff + len;
	ItemPointerSetInvalid(&tuple->t_self);
	tuple->t_tableOid = InvalidOid;
	td = tuple->t_data = (HeapTupleHeader) ((char *) tuple + HEAPTUPLESIZE);
	HeapTupleHeaderSetDatumLength(td, hoff + len);
	HeapTupleHeaderSetTypeId(td, desc->tdtypeid);
	HeapTupleHeaderSetTypMod(td, desc->tdtypmod);
	HeapTupleHeaderSetNatts(td, natts);
	td->t_hoff = hoff;
	td->t_infomask = infomask;

	/* the data, as heap_fill_tuple lays it out */
	data = (char *) td + hoff;
	memcpy(data, olddata, prefix);
	off = prefix;
	for (int i = first - 1; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Datum		val = slot->tts_values[i];
		Size		n;

		if (att->attbyval)
		{
			off = att_align_nominal(off, att->attalign);
			store_att_byval(data + off, val, att->attlen);
			off += att->attlen;
		}
		else if (att->attlen == -1)
		{
			Pointer		p = DatumGetPointer(val);

			if (VARATT_IS_SHORT(p))
			{
				n = VARSIZE_SHORT(p);
				memcpy(data + off, p, n);
			}
			else if (att->attstorage != TYPSTORAGE_PLAIN && VARATT_CAN_MAKE_SHORT(p))
			{
				n = VARATT_CONVERTED_SHORT_SIZE(p);
				SET_VARSIZE_SHORT(data + off, n);
				memcpy(data + off + 1, VARDATA(p), n - 1);
			}
			else
			{
				off = att_align_nominal(off, att->attalign);
				n = VARSIZE(p);
				memcpy(data + off, p, n);
			}
			off += n;
		}
		else
		{
			off = att_align_nominal(off, att->attalign);
			memcpy(data + off, DatumGetPointer(val), att->attlen);
			off += att->attlen;
		}
	}
	Assert(off == len);
	return tuple;
}

/*
 * upcast_row
 *		The upcast event's row, in the current memory context: the slot's
 *		values with the new ones in place (the slot's values array is
 *		changed: the caller restores it or clears the slot).
 */
static HeapTuple
upcast_row(TupleTableSlot *slot, Datum data, text *type, int32 schema)
{
	HeapTuple	stored = NULL;
	HeapTuple	tuple = NULL;
	bool		renamed;

	/* the stored tuple, when the slot holds one (not virtual contents) */
	if (TTS_IS_BUFFERTUPLE(slot) || TTS_IS_HEAPTUPLE(slot))
		stored = ((HeapTupleTableSlot *) slot)->tuple;
	renamed = (Pointer) type != DatumGetPointer(slot->tts_values[Anum_es_events_event_type - 1]);
	slot->tts_values[Anum_es_events_data - 1] = data;
	slot->tts_values[Anum_es_events_event_type - 1] = PointerGetDatum(type);
	slot->tts_values[Anum_es_events_schema_version - 1] = Int32GetDatum(schema);
	if (stored != NULL)
		tuple = splice_row(slot, stored,
						   renamed ? Anum_es_events_event_type : Anum_es_events_data);
	if (tuple == NULL)
		tuple = heap_form_tuple(slot->tts_tupleDescriptor, slot->tts_values, slot->tts_isnull);
	return tuple;
}

/*
 * es_upcast_slot
 *		The single upcasting step: if the event in slot has upcasters for its
 *		schema, replace its data, type and schema_version in the slot (with a
 *		tuple of its own) and return true.  Return false, leaving the slot
 *		untouched, when there is nothing to do.  Each step is called in a
 *		scope of its own (es_upcast_slot_held for a reader holding one).
 */
bool
es_upcast_slot(EsUpcaster *u, TupleTableSlot *slot)
{
	return es_upcast_slot_held(u, slot, NULL);
}

/*
 * es_upcast_slot_held
 *		es_upcast_slot for a reader that holds the upcasters' scope across
 *		events (es_scope_hold_enter): the scope stays open when this returns,
 *		until the reader releases the hold.  hold NULL: each call in a scope
 *		of its own.
 */
bool
es_upcast_slot_held(EsUpcaster *u, TupleTableSlot *slot, EsScopeHold *hold)
{
	EsUpcastCache *c = (EsUpcastCache *) u;
	text	   *type;
	int32		schema;
	Datum		data;
	HeapTuple	tuple;
	MemoryContext work;
	MemoryContext old;
	bool		own_work;

	if (!upcast_event(c, slot, hold, &data, &type, &schema, &work, &own_work))
		return false;

	/*
	 * The new row is made (in the work context) before the slot lets go of
	 * the stored one, whose buffer the old values point into; the slot keeps
	 * a copy in its own memory, since it must outlive the caller's per-event
	 * memory context.
	 */
	old = MemoryContextSwitchTo(work);
	tuple = upcast_row(slot, data, type, schema);
	MemoryContextSwitchTo(old);
	ExecForceStoreHeapTuple(tuple, slot, false);
	upcast_release(c, work, own_work);
	return true;
}

/*
 * es_upcast_put
 *		For a reader that puts each event into a tuplestore at once (es_load):
 *		if the event in slot has upcasters for its schema, put the upcast
 *		event into ts (rows of desc, the es_events row type) and return
 *		true; return false, storing nothing and leaving the slot untouched,
 *		when there is nothing to do (the caller then stores the slot).  The
 *		scope is held as by es_upcast_slot_held.
 *
 * The row goes from the work context straight into the tuplestore: through
 * the slot it would be copied once more.  The slot is given back as it was
 * (its values array restored).
 */
bool
es_upcast_put(EsUpcaster *u, TupleTableSlot *slot, EsScopeHold *hold,
			  Tuplestorestate *ts, TupleDesc desc)
{
	EsUpcastCache *c = (EsUpcastCache *) u;
	text	   *type;
	int32		schema;
	Datum		data;
	Datum		saved[3];
	HeapTuple	tuple;
	MemoryContext work;
	MemoryContext old;
	bool		own_work;

	if (!upcast_event(c, slot, hold, &data, &type, &schema, &work, &own_work))
		return false;

	saved[0] = slot->tts_values[Anum_es_events_data - 1];
	saved[1] = slot->tts_values[Anum_es_events_event_type - 1];
	saved[2] = slot->tts_values[Anum_es_events_schema_version - 1];
	old = MemoryContextSwitchTo(work);
	tuple = upcast_row(slot, data, type, schema);
	MemoryContextSwitchTo(old);
	tuplestore_puttuple(ts, tuple);
	slot->tts_values[Anum_es_events_data - 1] = saved[0];
	slot->tts_values[Anum_es_events_event_type - 1] = saved[1];
	slot->tts_values[Anum_es_events_schema_version - 1] = saved[2];
	upcast_release(c, work, own_work);
	return true;
}

/*
 * es_upcast_type
 *		The type an event of 'type' stored at 'schema' has once upcast (its
 *		renames followed), found without calling any upcaster: readers that
 *		filter by type (projections) decide with it whether an event is
 *		theirs before paying for, or failing in, its upcasting.  The result
 *		is 'type' or points into the registry, valid while u is pinned.
 */
const char *
es_upcast_type(EsUpcaster *u, const char *type, int32 schema)
{
	EsUpcastCache *c = (EsUpcastCache *) u;
	EsUpcastChain *chain;

	if (c == NULL)
		return type;
	chain = find_chain(c, type, strlen(type));
	for (int hops = 0; chain != NULL && hops < ES_MAX_UPCAST_STEPS; hops++)
	{
		int			i;

		if (schema < 1 || schema > chain->nsteps)
			break;
		/* the first renaming step from this schema on decides */
		for (i = schema - 1; i < chain->nsteps; i++)
			if (chain->steps[i].to_type != NULL)
				break;
		if (i == chain->nsteps)
			break;
		type = chain->steps[i].to_type;
		chain = find_chain(c, type, strlen(type));
		schema = 1;
	}
	return type;
}

PG_FUNCTION_INFO_V1(es_define_upcaster);

/*
 * es_define_upcaster(event_type text, from_schema int, upcast regprocedure,
 *					  to_type text DEFAULT NULL) RETURNS void
 *
 * Registers upcast(data jsonb) RETURNS jsonb as the step from schema
 * from_schema to from_schema + 1 of event_type, renaming the type to to_type
 * when given.  Chains start at 1 and have no gaps: an existing step is 42710,
 * one that would leave a gap 22023.
 */
Datum
es_define_upcaster(PG_FUNCTION_ARGS)
{
	const EsCatalog *cat;
	text	   *event_type;
	int32		from_schema;
	Oid			upcast;
	Oid			argtypes[1] = {JSONBOID};
	EsUpcastCache *c;
	EsUpcastChain *chain;
	int			nsteps;
	char	   *type;
	char	   *sql;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Oid			types[6] = {TEXTOID, INT4OID, REGPROCEDUREOID, TEXTOID, REGROLEOID, TEXTOID};

	es_check_not_null(fcinfo, 0, "event_type");
	es_check_not_null(fcinfo, 1, "from_schema");
	es_check_not_null(fcinfo, 2, "upcast");
	event_type = PG_GETARG_TEXT_PP(0);
	es_check_event_type("event_type", event_type);
	type = text_to_cstring(event_type);
	from_schema = PG_GETARG_INT32(1);
	upcast = PG_GETARG_OID(2);
	if (!PG_ARGISNULL(3))
	{
		text	   *to_type = PG_GETARG_TEXT_PP(3);

		es_check_event_type("to_type", to_type);
		if (strcmp(text_to_cstring(to_type), type) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("to_type must differ from event_type"),
					 errhint("Pass NULL to keep the type.")));
	}
	if (from_schema < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_schema must be at least 1"),
				 errdetail("from_schema was %d.", from_schema),
				 errhint("Schema versions count from 1; the first upcaster of a type converts schema 1 to 2.")));
	PreventCommandIfReadOnly("es_define_upcaster()");

	/* the chain as it stands, including this transaction's own changes */
	CommandCounterIncrement();
	c = current_cache();
	chain = find_chain(c, VARDATA_ANY(event_type), VARSIZE_ANY_EXHDR(event_type));
	nsteps = chain ? chain->nsteps : 0;
	/* a chain belongs to the owner of its first step */
	if (nsteps > 0)
		es_check_member(chain->steps[0].owner,
						psprintf("upcaster chain of event type \"%s\"", type));
	es_check_callback(upcast, "upcast", 1, argtypes, JSONBOID);
	if (from_schema <= nsteps)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("an upcaster of event type \"%s\" from schema %d already exists",
						type, from_schema),
				 errdetail("It is %s.", format_procedure(chain->steps[from_schema - 1].fn)),
				 errhint("Upcasters cannot be replaced: replace the function itself with CREATE OR REPLACE FUNCTION.")));
	if (from_schema > nsteps + 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an upcaster of event type \"%s\" from schema %d would leave a gap",
						type, from_schema),
				 errdetail("The chain of \"%s\" ends at schema %d.", type, nsteps + 1),
				 errhint("Register the upcaster from schema %d first.", nsteps + 1)));
	if (nsteps > 0 && chain->steps[nsteps - 1].to_type != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the chain of event type \"%s\" ends with a rename to \"%s\"",
						type, chain->steps[nsteps - 1].to_type),
				 errhint("Register further upcasters for \"%s\", starting from schema 1.",
						 chain->steps[nsteps - 1].to_type)));

	/* a rename must not lead back to this type: follow the renames from to_type */
	if (!PG_ARGISNULL(3))
	{
		char	   *next = text_to_cstring(PG_GETARG_TEXT_PP(3));

		for (int hops = 0; next != NULL && hops < ES_MAX_UPCAST_STEPS; hops++)
		{
			EsUpcastChain *c2 = find_chain(c, next, strlen(next));

			if (c2 == NULL || c2->steps[c2->nsteps - 1].to_type == NULL)
				break;
			next = c2->steps[c2->nsteps - 1].to_type;
			if (strcmp(next, type) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("renaming event type \"%s\" to \"%s\" would form a cycle",
								type, text_to_cstring(PG_GETARG_TEXT_PP(3))),
						 errdetail("The chain of \"%s\" already leads back to \"%s\" through renames.",
								   text_to_cstring(PG_GETARG_TEXT_PP(3)), type)));
		}
	}

	cat = es_catalog();
	values[0] = PointerGetDatum(event_type);
	values[1] = Int32GetDatum(from_schema);
	values[2] = ObjectIdGetDatum(upcast);
	if (PG_ARGISNULL(3))
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	else
		values[3] = PG_GETARG_DATUM(3);
	values[4] = ObjectIdGetDatum(GetUserId());
	values[5] = CStringGetTextDatum(es_capture_search_path());

	/* before 1.2 there are no owner columns: the update fills them in */
	if (cat->owners)
		sql = psprintf("INSERT INTO %s (event_type, from_schema, upcast, to_type, owner, search_path) "
					   "VALUES ($1, $2, $3, $4, $5, $6)",
					   es_qualified_name("es_upcasters"));
	else
		sql = psprintf("INSERT INTO %s (event_type, from_schema, upcast, to_type) "
					   "VALUES ($1, $2, $3, $4)",
					   es_qualified_name("es_upcasters"));
	(void) es_execute_as_owner(sql, cat->owners ? 6 : 4, types, values, nulls, SPI_OK_INSERT);

	/* every backend (this one at the next command) rebuilds its registry */
	CacheInvalidateRelcacheByRelid(cat->upcasters);
	PG_RETURN_VOID();
}
