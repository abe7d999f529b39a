/*-------------------------------------------------------------------------
 *
 * position.c
 *	  The safe bound of the global log (the high-water mark), and the one
 *	  way es_append draws positions.
 *
 * Positions come from a sequence, so they are handed out in one order and
 * committed in another: a transaction that took position 7 may commit after
 * the one that took position 8.  A reader that returned 8 and then asked for
 * "everything after 8" would never see 7.  The read paths therefore return
 * positions only up to a bound below which nothing can change any more:
 *
 *		bound = min(L, F - 1)
 *
 * where L is the sequence's last value, read first, and F the lowest
 * position that an appending transaction still in flight may hold.  Every
 * position <= bound was drawn by a transaction that has committed (and is
 * visible to any snapshot taken afterwards) or will never be used.  Nothing
 * waits: an appender that sits idle in its transaction holds back only the
 * positions from its own first one on.
 *
 * How in-flight appenders make F known.  Before an appending transaction
 * draws its first position (es_next_position), it publishes a lower bound
 * of every position it will draw; after the draw it tightens the bound to
 * the position itself.  The publication is private to the extension: no
 * SQL function, advisory lock or monitoring query can produce or hold it.
 *
 *	- The lower bound is the sequence's last value + 1, read (like L, under
 *	  the page's buffer lock) just before the draw.
 *	- With the library preloaded, it goes into a slot of shared memory per
 *	  PGPROC, then a full barrier, then nextval(), then the position itself
 *	  into the slot.  A reader reads L, then the slots of its database's
 *	  backends: an appender whose position is <= L drew it before L was
 *	  read, so its slot was written before too.
 *	- Without it (and to outlive PREPARE TRANSACTION, which hands the
 *	  transaction to no backend), it goes into two heavyweight locks of type
 *	  LOCKTAG_USERLOCK, a tag no SQL can make: "an appender is in flight"
 *	  (one tag per database, readers ask GetLockConflicts about it) and "its
 *	  positions are >= N" (N in the tag, found through GetLockStatusData,
 *	  only when the first lock has holders), taken before the draw.
 *	  Prepared transactions keep their locks, across restarts too.
 *
 * Slots and locks belong to the (sub)transaction that drew the first
 * position: a rolled-back savepoint clears them (its positions will never be
 * used), a released one hands them to its parent.  Commit clears them after
 * the transaction became visible (XACT_EVENT_COMMIT follows
 * ProcArrayEndTransaction).
 *
 * On a hot standby, and in a database that receives es_events by logical
 * replication, the in-flight appenders are on another server: the bound is
 * the mark the primary publishes (mark.c).
 *
 * Requirements: the sequence keeps CACHE 1 (checked on every call; a
 * backend holding cached values could hand out a value <= L later) and
 * nothing but es_next_position takes values from it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/pg_sequence.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "compat.h"
#include "event_sourcing.h"

/* commands/sequence.c keeps this private; it marks a sequence's page */
#define ES_SEQ_MAGIC	0x1717

/* locktag_field4 of the extension's private locks (LOCKTAG_USERLOCK) */
#define ES_LOCK_APPENDING	0x4531	/* an appender is in flight */
#define ES_LOCK_LOWEST		0x4532	/* its positions are >= field2:field3 */

/* Shared state, present only when the library is preloaded. */
typedef struct EsPositionShared
{
	int			nslots;
	pg_atomic_uint64 lowest[FLEXIBLE_ARRAY_MEMBER];	/* per pgprocno; 0: none */
} EsPositionShared;

static EsPositionShared *position_shared = NULL;

/*
 * This backend's appending transaction: the lowest position it holds
 * (0: none), the nesting level of the (sub)transaction that owns it, and
 * whether its slot is set (from just before the first draw).
 */
static int64 draw_lowest = 0;
static int	draw_level = 0;
static bool slot_published = false;	/* the slot is not 0 (maybe mid-draw) */
static LocalTransactionId draw_lxid = InvalidLocalTransactionId;
static bool exit_callback_set = false;

/*
 * es_last_position: the highest position this transaction drew (0: none),
 * and that of the last transaction of this session that committed one.
 */
static int64 xact_highest = 0;
static int64 session_last = 0;

/* the highest bound this backend returned, for its sequence: never less */
static int64 returned_bound = 0;
static Oid	returned_seq = InvalidOid;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * position_slots
 *		How many slots: one per PGPROC that can run a transaction (backends,
 *		auxiliary processes, prepared transactions' dummies).
 */
static int
position_slots(void)
{
#if PG_VERSION_NUM >= 150000
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
#else
	/* MaxBackends is not computed yet when a 14 server loads the library */
	return MaxConnections + autovacuum_max_workers + 1 + max_worker_processes +
		max_wal_senders + NUM_AUXILIARY_PROCS + max_prepared_xacts;
#endif
}

static Size
position_shmem_size(void)
{
	return add_size(offsetof(EsPositionShared, lowest),
					mul_size(position_slots(), sizeof(pg_atomic_uint64)));
}

/*
 * position_shmem_request
 *		Reserve the slots (PostgreSQL 15: from shmem_request_hook).
 */
static void
position_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(position_shmem_size()));
}

/*
 * position_shmem_startup
 *		Create or attach to the slots.
 */
static void
position_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	position_shared = ShmemInitStruct("event_sourcing positions", position_shmem_size(), &found);
	if (!found)
	{
		position_shared->nslots = position_slots();
		for (int i = 0; i < position_shared->nslots; i++)
			pg_atomic_init_u64(&position_shared->lowest[i], 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * set_lock_tag
 *		One of the private lock tags, in this database.
 */
static void
set_lock_tag(LOCKTAG *tag, uint16 kind, int64 position)
{
	tag->locktag_field1 = MyDatabaseId;
	tag->locktag_field2 = (uint32) (((uint64) position) >> 32);
	tag->locktag_field3 = (uint32) position;
	tag->locktag_field4 = kind;
	tag->locktag_type = LOCKTAG_USERLOCK;
	tag->locktag_lockmethodid = DEFAULT_LOCKMETHOD;
}

/*
 * publish_locks
 *		Hold the private locks saying "in flight, positions >= lowest",
 *		owned by the current (sub)transaction so that a rollback of it
 *		releases them.
 */
static void
publish_locks(int64 lowest)
{
	LOCKTAG		tag;
	ResourceOwner save = CurrentResourceOwner;

	CurrentResourceOwner = CurTransactionResourceOwner;
	set_lock_tag(&tag, ES_LOCK_APPENDING, 0);
	(void) LockAcquire(&tag, RowExclusiveLock, false, false);
	set_lock_tag(&tag, ES_LOCK_LOWEST, lowest);
	(void) LockAcquire(&tag, RowExclusiveLock, false, false);
	CurrentResourceOwner = save;
}

/*
 * set_slot
 *		Publish this backend's lowest position in shared memory (0: none).
 */
static inline void
set_slot(uint64 value)
{
	pg_atomic_write_u64(&position_shared->lowest[es_my_procno()], value);
}

/*
 * clear_slot_at_exit
 *		before_shmem_exit callback: a backend that leaves never holds a slot.
 */
static void
clear_slot_at_exit(int code, Datum arg)
{
	if (position_shared != NULL && MyProc != NULL)
		set_slot(0);
	draw_lowest = 0;
}

/*
 * forget_draw
 *		The transaction (or the subtransaction owning the lowest position)
 *		ended: nothing is held any more.  Locks go with their owner.
 */
static void
forget_draw(void)
{
	if (slot_published)
		set_slot(0);
	slot_published = false;
	draw_lowest = 0;
	draw_level = 0;
}

/*
 * check_sequence_cache
 *		Refuse to compute a bound when the sequence caches values.
 */
static void
check_sequence_cache(Oid seqoid)
{
	HeapTuple	tup;
	int64		seqcache;

	tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for sequence %u", seqoid);
	seqcache = ((Form_pg_sequence) GETSTRUCT(tup))->seqcache;
	ReleaseSysCache(tup);

	if (seqcache != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the global position sequence must have CACHE 1"),
				 errdetail("Sequence \"%s\" has CACHE " INT64_FORMAT "; with cached values the end of the global log cannot be known.",
						   get_rel_name(seqoid), seqcache),
				 errhint("Run ALTER SEQUENCE %s CACHE 1.",
						 quote_qualified_identifier(get_namespace_name(get_rel_namespace(seqoid)),
													get_rel_name(seqoid)))));
}

/*
 * sequence_last_value
 *		The last value handed out by the sequence, 0 if none yet.
 *
 * Reads the page directly under a buffer share lock (no lock an appender
 * waits for; the buffer lock also orders this read after the nextval()
 * calls whose values it shows).
 */
static int64
sequence_last_value(Oid seqoid)
{
	Relation	seqrel;
	Buffer		buf;
	Page		page;
	ItemId		lp;
	HeapTupleData tuple;
	Form_pg_sequence_data seq;
	int64		result;

	seqrel = relation_open(seqoid, AccessShareLock);
	if (seqrel->rd_rel->relkind != RELKIND_SEQUENCE)
		elog(ERROR, "\"%s\" is not a sequence", RelationGetRelationName(seqrel));

	buf = ReadBuffer(seqrel, 0);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	if (*((uint32 *) PageGetSpecialPointer(page)) != ES_SEQ_MAGIC)
		elog(ERROR, "bad magic number in sequence \"%s\"",
			 RelationGetRelationName(seqrel));

	lp = PageGetItemId(page, FirstOffsetNumber);
	Assert(ItemIdIsNormal(lp));
	tuple.t_data = (HeapTupleHeader) PageGetItem(page, lp);
	tuple.t_len = ItemIdGetLength(lp);
	seq = (Form_pg_sequence_data) GETSTRUCT(&tuple);
	result = seq->is_called ? seq->last_value : 0;

	UnlockReleaseBuffer(buf);
	relation_close(seqrel, AccessShareLock);

	return result;
}

/*
 * es_next_position
 *		Draw the next global position for a row es_append is about to
 *		insert.  The first draw of a transaction (or after the savepoint
 *		that held the first one was rolled back) publishes a lower bound of
 *		it before drawing; later draws cost nothing more than nextval().
 */
int64
es_next_position(Oid seqoid)
{
	int64		position;

	if (likely(draw_lowest != 0 && draw_lxid == es_my_lxid()))
	{
		position = nextval_internal(seqoid, false);
		xact_highest = position;
		return position;
	}

	draw_lowest = 0;
	es_check_log_writable();
	if (!exit_callback_set)
	{
		before_shmem_exit(clear_slot_at_exit, (Datum) 0);
		exit_callback_set = true;
	}

	if (position_shared != NULL)
	{
		/* if nextval() fails, the (sub)transaction's abort clears the slot */
		slot_published = true;
		draw_level = GetCurrentTransactionNestLevel();
		set_slot(sequence_last_value(seqoid) + 1);
		pg_memory_barrier();
		position = nextval_internal(seqoid, false);
		set_slot(position);
	}
	else
	{
		publish_locks(sequence_last_value(seqoid) + 1);
		position = nextval_internal(seqoid, false);
	}

	draw_lowest = position;
	draw_level = GetCurrentTransactionNestLevel();
	draw_lxid = es_my_lxid();
	xact_highest = position;
	return position;
}

/*
 * lowest_locked_position
 *		The lowest "positions >= N" lock held by another transaction of this
 *		database (live or prepared), PG_INT64_MAX when there is none.
 */
static int64
lowest_locked_position(void)
{
	LockData   *data = GetLockStatusData();
	int64		lowest = PG_INT64_MAX;

	for (int i = 0; i < data->nelements; i++)
	{
		LockInstanceData *l = &data->locks[i];
		int64		position;

		if (l->locktag.locktag_type != LOCKTAG_USERLOCK ||
			l->locktag.locktag_field4 != ES_LOCK_LOWEST ||
			l->locktag.locktag_field1 != MyDatabaseId ||
			l->holdMask == 0 || l->pid == MyProcPid)
			continue;
		position = (int64) (((uint64) l->locktag.locktag_field2 << 32) |
							l->locktag.locktag_field3);
		lowest = Min(lowest, position);
	}
	pfree(data->locks);
	pfree(data);
	return lowest;
}

/*
 * in_flight_bound
 *		Lower 'bound' (read from the sequence before this is called) below
 *		every position an appender in flight may still hold.
 */
static int64
in_flight_bound(int64 bound)
{
	LOCKTAG		tag;
	VirtualTransactionId *holders;
	int			nholders;

	if (position_shared != NULL)
	{
		int			self = es_my_procno();

		/* L was read before: see the file header */
		pg_memory_barrier();
		for (int i = 0; i < position_shared->nslots; i++)
		{
			int64		lowest;

			if (i == self)
				continue;
			lowest = (int64) pg_atomic_read_u64(&position_shared->lowest[i]);
			/* a backend's database never changes; the slot is of its sequence */
			if (lowest != 0 && lowest - 1 < bound &&
				GetPGProcByNumber(i)->databaseId == MyDatabaseId)
				bound = lowest - 1;
		}
	}

	/* prepared appenders (and, without preloading, every appender) */
	set_lock_tag(&tag, ES_LOCK_APPENDING, 0);
	holders = GetLockConflicts(&tag, ShareLock, &nholders);
	pfree(holders);
	if (nholders > 0)
	{
		int64		lowest = lowest_locked_position();

		if (lowest != PG_INT64_MAX && lowest - 1 < bound)
			bound = lowest - 1;
	}
	return bound;
}

/*
 * es_high_water_mark
 *		The highest position at or below which the global log can no longer
 *		change.  Never waits.
 *
 * When the sequence has not moved past known_position, there is nothing new
 * for a reader who has seen known_position, and L is returned at once.
 * The caller must take its snapshot after this returns.
 *
 * A bound once safe stays safe (later appenders draw above L), so a session
 * never gets a lower one than it got before: an appender between reading
 * its lower bound and drawing may momentarily hold back more than its own
 * position.
 */
int64
es_high_water_mark(const EsCatalog *cat, int64 known_position)
{
	Oid			seqoid = cat->position_seq;
	int64		last;
	int64		bound;

	if (es_log_is_remote(cat))
		return es_log_mark_read(cat);

	check_sequence_cache(seqoid);
	last = sequence_last_value(seqoid);
	if (last <= known_position)
		return last;
	bound = in_flight_bound(last);

	if (returned_seq != seqoid || returned_bound > last)
	{
		/* another sequence (the extension was created again), or reset */
		returned_seq = seqoid;
		returned_bound = 0;
	}
	bound = Max(bound, returned_bound);
	returned_bound = bound;
	return bound;
}

/*
 * position_xact_callback
 *		Clear the publication when the transaction ends; at PREPARE, move it
 *		from shared memory into the private locks, which the prepared
 *		transaction keeps.
 */
static void
position_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			/* before the locks are recorded in the two-phase state */
			if (draw_lowest != 0 && position_shared != NULL)
				publish_locks(draw_lowest);
			break;
		case XACT_EVENT_COMMIT:
			if (xact_highest != 0)
				session_last = xact_highest;
			xact_highest = 0;
			forget_draw();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			xact_highest = 0;
			forget_draw();
			break;
		default:
			break;
	}
}

/*
 * position_subxact_callback
 *		A rolled-back savepoint that drew the first position takes it along
 *		(its locks too, through their resource owner); a released one gives
 *		it to its parent.
 */
static void
position_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	int			level;

	if (draw_lowest == 0 && !slot_published)
		return;
	level = GetCurrentTransactionNestLevel();
	if (draw_level < level)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_draw();
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		draw_level = level - 1;
}

PG_FUNCTION_INFO_V1(es_last_position);

/*
 * es_last_position() RETURNS bigint
 *
 * The global position of the last event this transaction appended, or,
 * when it appended none, of the last event of this session's last
 * committed transaction that did; NULL when there is none.  For
 * read-your-writes: wait until a read model or subscription has reached it
 * (es_projection_wait, es_subscription_wait).  A position drawn in a
 * savepoint that was rolled back may not exist; waiting for it is still
 * right (every reader passes it).
 */
Datum
es_last_position(PG_FUNCTION_ARGS)
{
	if (xact_highest != 0)
		PG_RETURN_INT64(xact_highest);
	if (session_last != 0)
		PG_RETURN_INT64(session_last);
	PG_RETURN_NULL();
}

/*
 * es_position_init
 *		Callbacks and, when preloaded, the shared slots; from _PG_init.
 */
void
es_position_init(void)
{
	RegisterXactCallback(position_xact_callback, NULL);
	RegisterSubXactCallback(position_subxact_callback, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = position_shmem_request;
#else
	position_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = position_shmem_startup;
}

/*
 * es_log_last_position
 *		The last position drawn in this database's log (the sequence's last
 *		value); the log mark writer compares it with the bound.
 */
int64
es_log_last_position(const EsCatalog *cat)
{
	return sequence_last_value(cat->position_seq);
}

PG_FUNCTION_INFO_V1(es_safe_position);

/*
 * es_safe_position() RETURNS bigint
 *		The safe bound, for monitoring and for clients that poll.
 */
Datum
es_safe_position(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(es_high_water_mark(es_catalog(), 0));
}
