/*-------------------------------------------------------------------------
 *
 * subscription_read.c
 *	  Consuming a subscription: es_subscription_read, es_subscription_ack,
 *	  es_subscription_wait, and the lag of the es_subscriptions view.
 *
 * A member reads the events after its checkpoint that match the filter and
 * belong to it, through the one reader of the global log (read.c's log
 * scan: the safe prefix, upcast), and sees the same events again until it
 * acknowledges them (at least once).  Acknowledging in the transaction that
 * writes the consumer's own results to this database makes it exactly once.
 *
 * Sparse filters stay cheap: each member remembers the position up to which
 * nothing of its own exists after its checkpoint (scanned_to), so a poll
 * scans only what was appended since the last one, however far away the
 * next match is.  The member filter is applied before upcasting; the type
 * filter after it (an upcaster may rename a type), as for projections.
 * A read on a hot standby, or in a read-only transaction, works but does not
 * remember how far it scanned.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "event_sourcing.h"
#include "subscription.h"

/* how often es_subscription_wait looks again for a lease another session holds */
#define ES_LEASE_POLL_MS 100

/*
 * accept_member
 *		EsLogScan's filter before upcasting: the event's stream belongs to
 *		the member.
 */
static bool
accept_member(TupleTableSlot *slot, void *arg)
{
	const EsSubscription *s = arg;
	text	   *stream;
	bool		isnull;

	if (s->group_size <= 1)
		return true;
	stream = DatumGetTextPP(slot_getattr(slot, Anum_es_events_stream_id, &isnull));
	return es_stream_member(VARDATA_ANY(stream), VARSIZE_ANY_EXHDR(stream),
							s->group_size) == s->member;
}

/*
 * scan_matches
 *		The member's events after its checkpoint (skipping what scanned_to
 *		says holds none of them), up to max: put into rsinfo's result when
 *		rsinfo is not NULL,
 *		else only counted.  Returns how many; *clear_to is the position up to
 *		which the member has nothing beyond what was returned (the event
 *		before the first match, or how far the scan got when none).
 */
static int64
scan_matches(EsSubscription *s, int64 max, ReturnSetInfo *rsinfo, int64 *clear_to)
{
	int64		start = Max(s->position, s->scanned_to);
	EsLogScan  *scan;
	TupleTableSlot *slot;
	EsScopeHold hold = ES_SCOPE_HOLD_INIT;
	MemoryContext per_event;
	int64		n = 0;
	int64		first = -1;

	per_event = AllocSetContextCreate(CurrentMemoryContext, "event_sourcing subscription event",
									  ALLOCSET_DEFAULT_SIZES);
	scan = es_log_scan_begin(s->category, start);
	scan->accept = accept_member;
	scan->accept_arg = s;
	scan->hold = &hold;
	while (n < max)
	{
		MemoryContext old = MemoryContextSwitchTo(per_event);
		bool		isnull;

		slot = es_log_scan_next(scan);
		if (slot == NULL)
		{
			MemoryContextSwitchTo(old);
			break;
		}
		if (s->ntypes < 0 ||
			es_subscription_matches_type(s, TextDatumGetCString(slot_getattr(slot, Anum_es_events_event_type, &isnull))))
		{
			if (first < 0)
				first = DatumGetInt64(slot_getattr(slot, Anum_es_events_global_position, &isnull));
			if (rsinfo != NULL)
				es_result_put(rsinfo, slot);
			n++;
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(per_event);
	}
	es_scope_hold_release(&hold);

	if (first > 0)
		*clear_to = first - 1;
	else if (scan->complete)
		*clear_to = Max(scan->high, start);
	else
		*clear_to = scan->last_seen;
	es_log_scan_end(scan);
	MemoryContextDelete(per_event);
	return n;
}

/*
 * remember_scanned
 *		Store that the member has nothing in (position, upto], so the next
 *		poll starts there; only where writing is allowed, only forwards.
 */
static void
remember_scanned(EsSubscription *s, int64 upto)
{
	Datum		values[3];

	if (upto <= s->scanned_to || upto <= s->position ||
		RecoveryInProgress() || XactReadOnly)
		return;
	values[0] = CStringGetTextDatum(s->name);
	values[1] = Int32GetDatum(s->member);
	values[2] = Int64GetDatum(upto);
	(void) es_subscription_execute(ES_SUB_PLAN_SCANNED, values, NULL);
	s->scanned_to = upto;
}

/*
 * The epoch in which this session last read each member it read: an
 * acknowledgement of what it read then must not land on a checkpoint that a
 * reset or resize has moved since (the events it read may not be the
 * member's any more, or the reset would be undone).
 */
typedef struct ReadEpochKey
{
	uint32		name_hash;
	int32		member;
} ReadEpochKey;

typedef struct ReadEpoch
{
	ReadEpochKey key;
	char		name[ES_MAX_NAME_BYTES + 1];
	int32		epoch;
} ReadEpoch;

static HTAB *read_epochs = NULL;

/*
 * read_epoch_entry
 *		The session's entry for (name, member), made when create is set;
 *		NULL when there is none.  Names whose hashes collide share an entry,
 *		which then belongs to the last one read.
 */
static ReadEpoch *
read_epoch_entry(const char *name, int32 member, bool create)
{
	ReadEpochKey key;
	ReadEpoch  *entry;
	bool		found;

	if (read_epochs == NULL)
	{
		HASHCTL		ctl;

		if (!create)
			return NULL;
		ctl.keysize = sizeof(ReadEpochKey);
		ctl.entrysize = sizeof(ReadEpoch);
		ctl.hcxt = TopMemoryContext;
		read_epochs = hash_create("event_sourcing subscription reads", 16, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.name_hash = DatumGetUInt32(hash_any((const unsigned char *) name, strlen(name)));
	key.member = member;
	entry = hash_search(read_epochs, &key, create ? HASH_ENTER : HASH_FIND, &found);
	if (entry == NULL)
		return NULL;
	if (create)
	{
		strlcpy(entry->name, name, sizeof(entry->name));
		return entry;
	}
	return strcmp(entry->name, name) == 0 ? entry : NULL;
}

/*
 * member_arg
 *		The member argument, not NULL.
 */
static int32
member_arg(FunctionCallInfo fcinfo, int argno)
{
	es_check_not_null(fcinfo, argno, "member");
	return PG_GETARG_INT32(argno);
}

PG_FUNCTION_INFO_V1(es_subscription_read);

/*
 * es_subscription_read(name text, max_count int DEFAULT 100, member int DEFAULT 0)
 *		RETURNS SETOF es_events
 *
 * The next events after the member's checkpoint that match the filter and
 * belong to the member, in global order, upcast; the same ones again until
 * acknowledged.  No rows: the member is caught up with the safe log.
 */
Datum
es_subscription_read(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name = es_subscription_name_arg(fcinfo, 0);
	int32		max_count;
	int32		member;
	EsSubscription s;
	int64		clear_to;

	es_check_not_null(fcinfo, 1, "max_count");
	max_count = PG_GETARG_INT32(1);
	member = member_arg(fcinfo, 2);
	if (max_count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must not be negative"),
				 errdetail("max_count was %d.", max_count)));

	es_begin_result(fcinfo);
	es_subscription_load(name, member, false, true, &s);
	es_lease_take(name, member);
	read_epoch_entry(name, member, true)->epoch = s.epoch;
	if (max_count == 0)
		return (Datum) 0;
	(void) scan_matches(&s, max_count, rsinfo, &clear_to);
	remember_scanned(&s, clear_to);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(es_subscription_ack);

/*
 * es_subscription_ack(name text, position bigint, member int DEFAULT 0)
 *		RETURNS void
 *
 * "Processed everything up to here": moves the member's checkpoint forward
 * (going back is 22023: use es_subscription_reset).  In the consumer's own
 * transaction, it commits with the consumer's writes.
 *
 * One kept statement does the work and the checks when all is well; only
 * when it updates nothing does a second look say why.
 */
Datum
es_subscription_ack(PG_FUNCTION_ARGS)
{
	char	   *name = es_subscription_name_arg(fcinfo, 0);
	int64		position;
	int32		member;
	EsSubscription s;
	ReadEpoch  *read;
	int64		high;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	es_check_not_null(fcinfo, 1, "position");
	position = PG_GETARG_INT64(1);
	member = member_arg(fcinfo, 2);
	PreventCommandIfReadOnly("es_subscription_ack()");

	read = read_epoch_entry(name, member, false);
	high = es_high_water_mark(es_catalog(), position);
	if (position <= high)
	{
		values[0] = CStringGetTextDatum(name);
		values[1] = Int32GetDatum(member);
		values[2] = Int64GetDatum(position);
		values[3] = Int32GetDatum(read != NULL ? read->epoch : 0);
		nulls[3] = read != NULL ? ' ' : 'n';
		values[4] = ObjectIdGetDatum(GetUserId());
		if (es_subscription_execute(ES_SUB_PLAN_ACK, values, nulls) == 1)
		{
			/* an error here rolls the update back */
			es_lease_take(name, member);
			PG_RETURN_VOID();
		}
	}

	/* nothing updated: why? */
	es_subscription_load(name, member, false, true, &s);
	es_lease_take(name, member);
	if (position < s.position)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("acknowledgement of member %d of subscription \"%s\" goes backwards", member, name),
				 errdetail("The member's checkpoint is " INT64_FORMAT "; the acknowledged position was " INT64_FORMAT ".",
						   s.position, position),
				 errhint("To read events again, use es_subscription_reset.")));
	if (read != NULL && read->epoch != s.epoch)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("member %d of subscription \"%s\" was reset or resized since this session read it", member, name),
				 errdetail("The events read before may not be the member's, or may have to be read again; the member's checkpoint is now " INT64_FORMAT ".",
						   s.position),
				 errhint("Roll back and read again from the member's checkpoint.")));
	if (position > high)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position " INT64_FORMAT " is past the safe end of the global log", position),
				 errdetail("The safe end is " INT64_FORMAT "; a member acknowledges what it has read.", high)));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("member %d of subscription \"%s\" is gone", member, name),
			 errdetail("The subscription was resized or dropped while this acknowledgement waited."),
			 errhint("Read again from the member's new checkpoint.")));
	PG_RETURN_VOID();			/* not reached */
}

PG_FUNCTION_INFO_V1(es_subscription_wait);

/*
 * es_subscription_wait(name text, member int DEFAULT 0, timeout_ms int DEFAULT 10000)
 *		RETURNS boolean
 *
 * Blocks until the member has an event to read (true) or the timeout passes
 * (false).  While another session holds the member's lease it waits for
 * that too, and takes the member over as soon as that session ends.
 */
Datum
es_subscription_wait(PG_FUNCTION_ARGS)
{
	char	   *name = es_subscription_name_arg(fcinfo, 0);
	int32		member = member_arg(fcinfo, 1);
	int32		timeout_ms;
	TimestampTz deadline;
	EsSubscription s;

	es_check_not_null(fcinfo, 2, "timeout_ms");
	timeout_ms = PG_GETARG_INT32(2);
	es_check_timeout(timeout_ms);
	es_check_read_committed("es_subscription_wait", "the events it waits for");
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	es_subscription_load(name, member, false, true, &s);

	/* the lease first: until it is ours, nothing here is ours to read */
	while (!es_lease_try(name, member))
	{
		if (!es_poll_sleep(deadline, ES_LEASE_POLL_MS))
			PG_RETURN_BOOL(false);
	}

	for (;;)
	{
		int64		clear_to;
		int64		mark;

		if (scan_matches(&s, 1, NULL, &clear_to) > 0)
			PG_RETURN_BOOL(true);
		remember_scanned(&s, clear_to);
		if (!es_wait_for_log(Max(clear_to, s.position), deadline, &mark))
			PG_RETURN_BOOL(false);
	}
}

/* how often es_subscription_wait_acked looks at the checkpoints */
#define ES_ACKED_POLL_MS 10

/* accept_upto's argument: the member, and the position to look up to */
typedef struct AcceptUpto
{
	const EsSubscription *s;
	int64		bound;
} AcceptUpto;

/*
 * accept_upto
 *		EsLogScan's filter for member_done_upto: the member's events up to
 *		the bound, and the first event past it (which ends the look).
 */
static bool
accept_upto(TupleTableSlot *slot, void *arg)
{
	const AcceptUpto *a = arg;
	bool		isnull;

	if (DatumGetInt64(slot_getattr(slot, Anum_es_events_global_position, &isnull)) > a->bound)
		return true;
	return accept_member(slot, (void *) a->s);
}

/*
 * member_done_upto
 *		Has the member acknowledged every event of its own up to position?
 *		(None of them after its checkpoint, and the safe log reaches the
 *		position.)  Reads only; remembers nothing.
 */
static bool
member_done_upto(const EsSubscription *s, int64 position)
{
	int64		start = Max(s->position, s->scanned_to);
	AcceptUpto	a = {s, position};
	EsLogScan  *scan;
	TupleTableSlot *slot;
	EsScopeHold hold = ES_SCOPE_HOLD_INIT;
	bool		done;

	if (start >= position)
		return true;
	scan = es_log_scan_begin(s->category, start);
	scan->accept = accept_upto;
	scan->accept_arg = &a;
	scan->hold = &hold;
	for (;;)
	{
		bool		isnull;

		slot = es_log_scan_next(scan);
		if (slot == NULL)
		{
			/* nothing of its own left in the safe log: is the log there? */
			done = scan->high >= position;
			break;
		}
		if (DatumGetInt64(slot_getattr(slot, Anum_es_events_global_position, &isnull)) > position)
		{
			done = true;
			break;
		}
		if (s->ntypes < 0 ||
			es_subscription_matches_type(s, TextDatumGetCString(slot_getattr(slot, Anum_es_events_event_type, &isnull))))
		{
			done = false;
			break;
		}
	}
	es_scope_hold_release(&hold);
	es_log_scan_end(scan);
	return done;
}

PG_FUNCTION_INFO_V1(es_subscription_wait_acked);

/*
 * es_subscription_wait_acked(name text, position bigint,
 *							  timeout_ms int DEFAULT 10000) RETURNS boolean
 *
 * Read-your-writes for consumers outside the database: blocks until every
 * member of the subscription has acknowledged all of its events up to the
 * global position (true) -- a member with none of its own there has
 * nothing to do -- or the timeout passes (false).  Only reads (it works on
 * a hot standby); takes no lease.  Reads the checkpoints afresh each time,
 * so it needs a READ COMMITTED transaction.
 */
Datum
es_subscription_wait_acked(PG_FUNCTION_ARGS)
{
	char	   *name = es_subscription_name_arg(fcinfo, 0);
	int64		position;
	int32		timeout_ms;
	TimestampTz deadline;
	MemoryContext poll;

	es_check_not_null(fcinfo, 1, "position");
	es_check_not_null(fcinfo, 2, "timeout_ms");
	position = PG_GETARG_INT64(1);
	timeout_ms = PG_GETARG_INT32(2);
	es_check_timeout(timeout_ms);
	es_check_read_committed("es_subscription_wait_acked", "the acknowledgements it waits for");
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	poll = AllocSetContextCreate(CurrentMemoryContext, "event_sourcing subscription poll",
								 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(poll);
		EsSubscription def;
		EsSubscription *members;
		int			n;
		bool		done = true;

		CHECK_FOR_INTERRUPTS();
		/* like es_projection_wait: EXECUTE is the privilege, not ownership */
		es_subscription_load(name, -1, false, false, &def);
		members = es_subscription_load_members(&def, &n);
		for (int i = 0; i < n && done; i++)
			done = member_done_upto(&members[i], position);
		MemoryContextSwitchTo(old);
		MemoryContextReset(poll);
		if (done)
			PG_RETURN_BOOL(true);

		if (!es_poll_sleep(deadline, ES_ACKED_POLL_MS))
			PG_RETURN_BOOL(false);
	}
}

PG_FUNCTION_INFO_V1(es_subscription_lag);

/*
 * _es_subscription_lag(name text, member int) RETURNS bigint
 *
 * How many events of the member are in the safe log after its checkpoint,
 * for the es_subscriptions view; NULL on a hot standby (no high-water mark).
 */
Datum
es_subscription_lag(PG_FUNCTION_ARGS)
{
	char	   *name = es_subscription_name_arg(fcinfo, 0);
	int32		member = member_arg(fcinfo, 1);
	EsSubscription s;
	int64		clear_to;

	if (RecoveryInProgress())
		PG_RETURN_NULL();
	es_subscription_load(name, member, false, false, &s);
	PG_RETURN_INT64(scan_matches(&s, PG_INT64_MAX, NULL, &clear_to));
}
