/*-------------------------------------------------------------------------
 *
 * position.c
 *	  The high-water mark of the global log.
 *
 * Positions come from a sequence, so they are handed out in one order and
 * committed in another: a transaction that took position 7 may commit after
 * the one that took position 8.  A reader that returned 8 and then asked for
 * "everything after 8" would never see 7.  The read paths therefore return
 * positions only up to a high-water mark below which nothing can change any
 * more.
 *
 * The mark rests on one property of nextval() (commands/sequence.c,
 * lock_and_open_sequence): before a transaction takes its first value from a
 * sequence it acquires RowExclusiveLock on the sequence, owned by the
 * top-level transaction and held until it ends.  So:
 *
 *	1. read the sequence's last_value L (the page itself, under a buffer share
 *	   lock; no lock that appenders would have to wait for);
 *	2. wait for every transaction that holds a lock conflicting with
 *	   ShareLock on the sequence at this moment (WaitForLockers, the
 *	   primitive CREATE INDEX CONCURRENTLY uses: GetLockConflicts and
 *	   VirtualXactLock, fast-path locks and prepared transactions included).
 *
 * Every position <= L was handed out by a transaction that took the lock
 * before L was written, so after step 2 each of them has committed (and is
 * visible to any snapshot taken afterwards, since locks are released after
 * the transaction leaves the proc array) or aborted (and its positions will
 * never be used).  Transactions that start appending after step 1 get
 * positions > L and do not matter.  Transactions that merely have an xid, or
 * are open for long without appending, hold no lock on the sequence and do
 * not delay readers.  The append path pays nothing for this.
 *
 * It requires CACHE 1 (a backend holding cached values could hand out a
 * value <= L later without touching the sequence; checked here on every
 * call) and that nothing but es_append takes values from the sequence.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_sequence.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "event_sourcing.h"

/* commands/sequence.c keeps this private; it marks a sequence's page */
#define ES_SEQ_MAGIC	0x1717

/*
 * check_sequence_cache
 *		Refuse to compute a mark when the sequence caches values.
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
 * Reads the page directly rather than calling pg_sequence_last_value(),
 * which would take RowExclusiveLock on the sequence and so make this reader
 * one of the transactions other readers wait for.
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
 * es_high_water_mark
 *		The highest position below which the global log can no longer change.
 *
 * When the sequence has not moved past known_position, there is nothing new
 * for a reader who has seen known_position, and the mark is returned at once
 * without waiting for anyone (pollers of an idle log never block).
 *
 * May wait for appending transactions that are in flight at the time of the
 * call; the wait is an ordinary lock wait, so it obeys query cancel,
 * statement_timeout, lock_timeout and the deadlock detector.  The caller
 * must take its snapshot after this returns.
 */
int64
es_high_water_mark(const EsCatalog *cat, int64 known_position)
{
	Oid			seqoid = cat->position_seq;
	int64		last;
	LOCKTAG		tag;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the global log cannot be read on a hot standby"),
				 errdetail("A standby cannot see which appends are still in flight on the primary, so it cannot guarantee that no event is skipped."),
				 errhint("Read the global log from the primary; es_load and es_stream_version work on a standby.")));

	check_sequence_cache(seqoid);
	last = sequence_last_value(seqoid);
	if (last > known_position)
	{
		SET_LOCKTAG_RELATION(tag, MyDatabaseId, seqoid);
		WaitForLockers(tag, ShareLock, false);
	}
	return last;
}

PG_FUNCTION_INFO_V1(es_safe_position);

/*
 * es_safe_position() RETURNS bigint
 *		The high-water mark, for monitoring and for clients that poll.
 */
Datum
es_safe_position(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(es_high_water_mark(es_catalog(), 0));
}
