/*-------------------------------------------------------------------------
 *
 * subscription.c
 *	  Durable subscriptions for consumers outside the database: definitions,
 *	  consumer groups and leases (reading and acknowledging:
 *	  subscription_read.c).
 *
 * A subscription names a filter (a category, event types, or both) and a
 * group size.  Each member of the group (0 .. group_size - 1) has its own
 * checkpoint in es_subscription_members: the position of the last event it
 * acknowledged.  A stream belongs to exactly one member,
 * hash_any_extended(stream_id, 0) mod group_size, so per-stream order holds
 * within a group (es_subscription_member computes it, for clients).
 *
 * A member is consumed by one session at a time: the first read, ack or wait
 * takes the member's lease, a session-level lock (advisory lock tag, class
 * ES_SUBSCRIPTION_LOCK_CLASS, which no SQL function can make) held until the
 * session ends or es_subscription_release.  A second session gets 55P03 at
 * once (es_subscription_wait waits for the lease instead); when the first
 * session's connection goes -- the consumer exits, crashes or is killed --
 * the server ends the backend and the lock goes with it, so the next try
 * takes over at once.
 *
 * Definitions have an owner, the defining role; reading, acknowledging,
 * waiting, resetting, resizing and dropping need membership in it (42501),
 * as for projections.  No user code runs here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "compat.h"
#include "event_sourcing.h"
#include "subscription.h"

/* field4 of the advisory lock tag of a member's lease ("EV") */
#define ES_SUBSCRIPTION_LOCK_CLASS	0x4556
/* the largest consumer group */
#define ES_MAX_GROUP_SIZE			1024

/*
 * es_subscription_name_arg
 *		The name argument as a C string, checked.
 */
char *
es_subscription_name_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *name;

	es_check_not_null(fcinfo, argno, "name");
	name = PG_GETARG_TEXT_PP(argno);
	es_check_name("subscription name", VARSIZE_ANY_EXHDR(name));
	return text_to_cstring(name);
}

/*
 * subscription_not_found
 *		42704 for a name that is not defined.
 */
static void
subscription_not_found(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("subscription \"%s\" does not exist", name),
			 errhint("Define it with es_define_subscription(%s).", quote_literal_cstr(name))));
}

/*
 * es_check_member_arg
 *		A member number must be within the group (22023).
 */
void
es_check_member_arg(const EsSubscription *s, int32 member)
{
	if (member < 0 || member >= s->group_size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("member %d is outside subscription \"%s\"", member, s->name),
				 errdetail("The subscription's group has %d member%s, numbered from 0 to %d.",
						   s->group_size, s->group_size == 1 ? "" : "s", s->group_size - 1)));
}

/*
 * cmp_cstring
 *		qsort/bsearch comparator of C strings (byte order).
 */
static int
cmp_cstring(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* kept plans (EsSubscriptionPlan), and the catalog generation they belong to */
static SPIPlanPtr plans[ES_SUB_NPLANS];
static uint64 plans_generation = 0;

/*
 * subscription_plan
 *		The kept plan of one of the statements every read and acknowledgement
 *		runs, prepared on first use in each catalog generation (the tables
 *		are named with the extension's schema, operators with pg_catalog:
 *		search_path plays no part).  Call it connected to SPI.
 */
static SPIPlanPtr
subscription_plan(EsSubscriptionPlan which)
{
	uint64		generation = es_catalog_generation();
	char	   *defs;
	char	   *members;
	char	   *sql = NULL;
	int			nargs = 0;
	Oid			types[5] = {TEXTOID, INT4OID, INT8OID, INT4OID, OIDOID};

	if (plans_generation != generation)
	{
		for (int i = 0; i < ES_SUB_NPLANS; i++)
		{
			if (plans[i] != NULL)
				SPI_freeplan(plans[i]);
			plans[i] = NULL;
		}
		plans_generation = generation;
	}
	if (plans[which] != NULL)
		return plans[which];

	defs = es_qualified_name("es_subscription_defs");
	members = es_qualified_name("es_subscription_members");
	switch (which)
	{
		case ES_SUB_PLAN_LOAD:
		case ES_SUB_PLAN_LOAD_SHARE:
			/* $1 name, $2 member */
			sql = psprintf("SELECT d.category, d.event_types, d.group_size, d.owner::pg_catalog.oid, "
						   "m.position, m.scanned_to, m.epoch FROM %s d LEFT JOIN %s m "
						   "ON m.name OPERATOR(pg_catalog.=) d.name AND m.member OPERATOR(pg_catalog.=) $2 "
						   "WHERE d.name OPERATOR(pg_catalog.=) $1%s",
						   defs, members,
						   which == ES_SUB_PLAN_LOAD_SHARE ? " FOR SHARE OF d" : "");
			nargs = 2;
			break;
		case ES_SUB_PLAN_ACK:

			/*
			 * $1 name, $2 member, $3 position, $4 the epoch the session read
			 * in (NULL: it did not read), $5 the acknowledging role.  Rows of
			 * a role that may not acknowledge are never locked; a concurrent
			 * resize deletes the row, so the update waits for it and then
			 * finds nothing.
			 */
			sql = psprintf("UPDATE %s m SET position = $3, last_ack_at = pg_catalog.now() "
						   "FROM %s d WHERE m.name OPERATOR(pg_catalog.=) $1 "
						   "AND m.member OPERATOR(pg_catalog.=) $2 "
						   "AND d.name OPERATOR(pg_catalog.=) $1 "
						   "AND m.position OPERATOR(pg_catalog.<=) $3 "
						   "AND ($4 IS NULL OR m.epoch OPERATOR(pg_catalog.=) $4) "
						   "AND pg_catalog.pg_has_role($5, d.owner::pg_catalog.oid, 'USAGE')",
						   members, defs);
			nargs = 5;
			break;
		case ES_SUB_PLAN_SCANNED:
			/* $1 name, $2 member, $3 position */
			sql = psprintf("UPDATE %s SET scanned_to = $3 WHERE name OPERATOR(pg_catalog.=) $1 "
						   "AND member OPERATOR(pg_catalog.=) $2 AND scanned_to OPERATOR(pg_catalog.<) $3",
						   members);
			nargs = 3;
			break;
		case ES_SUB_PLAN_MEMBERS:
			/* $1 name; the group size too, which a resize changes */
			sql = psprintf("SELECT m.member, m.position, m.scanned_to, m.epoch, d.group_size "
						   "FROM %s m JOIN %s d ON d.name OPERATOR(pg_catalog.=) m.name "
						   "WHERE m.name OPERATOR(pg_catalog.=) $1 ORDER BY m.member",
						   members, defs);
			nargs = 1;
			break;
		case ES_SUB_NPLANS:
			elog(ERROR, "no such subscription statement");
	}
	plans[which] = SPI_prepare(sql, nargs, types);
	if (plans[which] == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(plans[which]);
	return plans[which];
}

/*
 * es_subscription_execute
 *		Run one of the kept statements that write (ES_SUB_PLAN_ACK,
 *		ES_SUB_PLAN_SCANNED) as the extension owner; returns the rows it
 *		updated.
 */
uint64
es_subscription_execute(EsSubscriptionPlan which, Datum *values, const char *nulls)
{
	EsSavedUser saved;
	uint64		processed;
	int			rc;

	Assert(which == ES_SUB_PLAN_ACK || which == ES_SUB_PLAN_SCANNED);
	es_become_owner(&saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_plan(subscription_plan(which), values, nulls, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "updating a subscription checkpoint failed: %s", SPI_result_code_string(rc));
	processed = SPI_processed;
	SPI_finish();
	es_restore_user(&saved);
	return processed;
}

/*
 * es_subscription_load
 *		Read a subscription's definition and, when member >= 0, that
 *		member's checkpoint into *s (allocated in the current context), and
 *		check the caller's membership in its owner (with check_owner: all but
 *		the es_subscriptions view do).  for_share locks the
 *		definition against a concurrent resize or drop until the end of the
 *		transaction (resets and drops; not reads, which also run read-only).
 */
void
es_subscription_load(const char *name, int32 member, bool for_share, bool check_owner,
					 EsSubscription *s)
{
	MemoryContext caller = CurrentMemoryContext;
	EsSavedUser saved;
	Datum		values[2];
	bool		found;

	memset(s, 0, sizeof(EsSubscription));
	s->name = pstrdup(name);
	s->member = member;
	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(member);

	es_become_owner(&saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_plan(subscription_plan(for_share ? ES_SUB_PLAN_LOAD_SHARE : ES_SUB_PLAN_LOAD),
						 values, NULL, !for_share, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading subscription \"%s\" failed", name);
	found = SPI_processed > 0;
	if (found)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		MemoryContext old = MemoryContextSwitchTo(caller);

		d = SPI_getbinval(tup, desc, 1, &isnull);
		s->category = isnull ? NULL : DatumGetTextPCopy(d);
		d = SPI_getbinval(tup, desc, 2, &isnull);
		s->ntypes = -1;
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *nulls;

			deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &nulls, &s->ntypes);
			s->types = palloc(sizeof(char *) * Max(s->ntypes, 1));
			for (int i = 0; i < s->ntypes; i++)
				s->types[i] = TextDatumGetCString(elems[i]);
			qsort(s->types, s->ntypes, sizeof(char *), cmp_cstring);
		}
		s->group_size = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		s->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		s->position = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		s->has_member = !isnull;
		s->scanned_to = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
		s->epoch = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	es_restore_user(&saved);

	if (!found)
		subscription_not_found(name);
	if (check_owner)
		es_check_member(s->owner, psprintf("subscription \"%s\"", name));
	if (member >= 0)
	{
		es_check_member_arg(s, member);
		if (!s->has_member)
			elog(ERROR, "member %d of subscription \"%s\" has no checkpoint", member, name);
	}
}

/*
 * es_subscription_load_members
 *		Every member of the subscription def (loaded without a member): an
 *		array of *n copies of it, each with one member's checkpoint and the
 *		group's size, as a new snapshot sees them (in READ COMMITTED, what has committed by
 *		now: es_subscription_wait_acked calls it again and again within one
 *		statement).  42704 when the subscription is gone.
 */
EsSubscription *
es_subscription_load_members(const EsSubscription *def, int *n)
{
	MemoryContext caller = CurrentMemoryContext;
	EsSavedUser saved;
	Datum		values[1];
	EsSubscription *result;

	values[0] = CStringGetTextDatum(def->name);
	es_become_owner(&saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* not read_only: a snapshot of its own, not the statement's */
	if (SPI_execute_plan(subscription_plan(ES_SUB_PLAN_MEMBERS), values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading the members of subscription \"%s\" failed", def->name);
	*n = (int) SPI_processed;
	result = MemoryContextAlloc(caller, sizeof(EsSubscription) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		result[i] = *def;
		result[i].member = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		result[i].has_member = true;
		result[i].position = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		result[i].scanned_to = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		result[i].epoch = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		result[i].group_size = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
	}
	SPI_finish();
	es_restore_user(&saved);
	if (*n == 0)
		subscription_not_found(def->name);
	return result;
}

/*
 * es_subscription_matches_type
 *		Does the subscription take events of this (upcast) type?
 */
bool
es_subscription_matches_type(const EsSubscription *s, const char *type)
{
	if (s->ntypes < 0)
		return true;
	return bsearch(&type, s->types, s->ntypes, sizeof(char *), cmp_cstring) != NULL;
}

/*
 * es_stream_member
 *		The member of a group of group_size that a stream belongs to.
 */
int32
es_stream_member(const char *stream, int len, int32 group_size)
{
	uint64		h;

	if (group_size <= 1)
		return 0;
	h = DatumGetUInt64(hash_any_extended((const unsigned char *) stream, len, 0));
	return (int32) (h % (uint64) group_size);
}

/*
 * lease_tag
 *		The lock tag of a member's lease.  Names whose hashes collide merely
 *		share a lease per member number.
 */
static void
lease_tag(LOCKTAG *tag, const char *name, int32 member)
{
	uint32		h = DatumGetUInt32(hash_any((const unsigned char *) name, strlen(name)));

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, h, (uint32) member,
						 ES_SUBSCRIPTION_LOCK_CLASS);
}

/*
 * es_lease_try
 *		Hold the member's lease (taking it when free): true, or false when
 *		another session holds it.
 */
bool
es_lease_try(const char *name, int32 member)
{
	LOCKTAG		tag;

	lease_tag(&tag, name, member);
	if (es_lock_held_by_me(&tag, ExclusiveLock))
		return true;
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * es_lease_take
 *		es_lease_try, or 55P03 (lock_not_available) when another session
 *		consumes the member.
 */
void
es_lease_take(const char *name, int32 member)
{
	if (!es_lease_try(name, member))
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("member %d of subscription \"%s\" is being consumed by another session",
						member, name),
				 errdetail("Each member is consumed by one session at a time; the session that read, acknowledged or waited first holds it until it ends or calls es_subscription_release."),
				 errhint("Retry later, or wait with es_subscription_wait, which takes the member over as soon as that session ends.")));
}

PG_FUNCTION_INFO_V1(es_subscription_release);

/*
 * es_subscription_release(name text, member int DEFAULT 0) RETURNS boolean
 *
 * Gives up this session's lease of the member (another session may then
 * consume it); false when this session did not hold it.
 */
Datum
es_subscription_release(PG_FUNCTION_ARGS)
{
	char	   *name = es_subscription_name_arg(fcinfo, 0);
	LOCKTAG		tag;
	int32		member;

	es_check_not_null(fcinfo, 1, "member");
	member = PG_GETARG_INT32(1);
	lease_tag(&tag, name, member);
	if (!es_lock_held_by_me(&tag, ExclusiveLock))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(LockRelease(&tag, ExclusiveLock, true));
}

PG_FUNCTION_INFO_V1(es_subscription_member);

/*
 * es_subscription_member(stream_id text, group_size int) RETURNS int
 *
 * The member of a group of group_size that consumes the stream.
 */
Datum
es_subscription_member(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	int32		group_size;

	es_check_not_null(fcinfo, 0, "stream_id");
	es_check_not_null(fcinfo, 1, "group_size");
	stream_id = PG_GETARG_TEXT_PP(0);
	group_size = PG_GETARG_INT32(1);
	es_check_group_size(group_size);
	PG_RETURN_INT32(es_stream_member(VARDATA_ANY(stream_id), VARSIZE_ANY_EXHDR(stream_id),
									 group_size));
}

/*
 * es_check_group_size
 *		1 .. ES_MAX_GROUP_SIZE (22023).
 */
void
es_check_group_size(int32 group_size)
{
	if (group_size < 1 || group_size > ES_MAX_GROUP_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("group_size must be between 1 and %d", ES_MAX_GROUP_SIZE),
				 errdetail("group_size was %d.", group_size)));
}

/*
 * check_types_arg
 *		event_types: NULL (all) or a non-empty one-dimensional array of type
 *		names without NULLs; returns it sorted and without duplicates.
 */
static ArrayType *
check_types_arg(ArrayType *arr)
{
	Datum	   *elems;
	int			n;
	int			k = 0;
	char	  **names;

	elems = es_check_type_array(arr, "Pass NULL for a subscription to every event type.", &n);
	names = palloc(sizeof(char *) * n);
	for (int i = 0; i < n; i++)
		names[i] = TextDatumGetCString(elems[i]);
	qsort(names, n, sizeof(char *), cmp_cstring);
	for (int i = 0; i < n; i++)
		if (k == 0 || strcmp(names[k - 1], names[i]) != 0)
			names[k++] = names[i];
	for (int i = 0; i < k; i++)
		elems[i] = CStringGetTextDatum(names[i]);
	return construct_array(elems, k, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * insert_members
 *		Checkpoints for members 0 .. group_size - 1, all at 'position', in
 *		'epoch'.
 */
static void
insert_members(const char *name, int32 group_size, int64 position, int32 epoch)
{
	Oid			types[4] = {TEXTOID, INT4OID, INT8OID, INT4OID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(group_size);
	values[2] = Int64GetDatum(position);
	values[3] = Int32GetDatum(epoch);
	(void) es_execute_as_owner(psprintf("INSERT INTO %s (name, member, position, epoch) "
										"SELECT $1, g, $3, $4 FROM pg_catalog.generate_series(0, $2 OPERATOR(pg_catalog.-) 1) g",
										es_qualified_name("es_subscription_members")),
							   4, types, values, NULL, SPI_OK_INSERT);
}

PG_FUNCTION_INFO_V1(es_define_subscription);

/*
 * es_define_subscription(name text, category text DEFAULT NULL,
 *						  event_types text[] DEFAULT NULL,
 *						  start_position bigint DEFAULT 0,
 *						  group_size int DEFAULT 1) RETURNS void
 *
 * The caller becomes the owner.  Every member starts after start_position.
 */
Datum
es_define_subscription(PG_FUNCTION_ARGS)
{
	char	   *name = es_subscription_name_arg(fcinfo, 0);
	int64		start;
	int32		group_size;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTARRAYOID, INT4OID, OIDOID, INT8OID};

	if (!PG_ARGISNULL(1))
		es_check_category(PG_GETARG_TEXT_PP(1));
	es_check_not_null(fcinfo, 3, "start_position");
	es_check_not_null(fcinfo, 4, "group_size");
	start = PG_GETARG_INT64(3);
	group_size = PG_GETARG_INT32(4);
	if (start < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start_position must not be negative"),
				 errdetail("start_position was " INT64_FORMAT ".", start),
				 errhint("0 starts at the beginning of the log; es_safe_position() at its end.")));
	es_check_group_size(group_size);
	PreventCommandIfReadOnly("es_define_subscription()");

	values[0] = CStringGetTextDatum(name);
	values[1] = PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PointerGetDatum(check_types_arg(PG_GETARG_ARRAYTYPE_P(2)));
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[3] = Int32GetDatum(group_size);
	values[4] = ObjectIdGetDatum(GetUserId());
	values[5] = Int64GetDatum(start);
	if (es_execute_as_owner(psprintf("INSERT INTO %s (name, category, event_types, group_size, owner, start_position) "
									 "VALUES ($1, $2, $3, $4, $5::pg_catalog.regrole, $6) ON CONFLICT (name) DO NOTHING",
									 es_qualified_name("es_subscription_defs")),
							6, types, values, nulls, SPI_OK_INSERT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("subscription \"%s\" already exists", name),
				 errhint("Drop it first with es_drop_subscription(%s).", quote_literal_cstr(name))));
	insert_members(name, group_size, start, 1);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_drop_subscription);

/*
 * es_drop_subscription(name text) RETURNS void
 *
 * Removes the definition and its checkpoints.  Sessions holding a lease
 * keep their (now meaningless) lock until they end or release it.
 */
Datum
es_drop_subscription(PG_FUNCTION_ARGS)
{
	char	   *name = es_subscription_name_arg(fcinfo, 0);
	EsSubscription s;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	PreventCommandIfReadOnly("es_drop_subscription()");
	es_subscription_load(name, -1, true, true, &s);
	values[0] = CStringGetTextDatum(name);
	(void) es_execute_as_owner(psprintf("DELETE FROM %s WHERE name OPERATOR(pg_catalog.=) $1",
										es_qualified_name("es_subscription_defs")),
							   1, types, values, NULL, SPI_OK_DELETE);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_alter_subscription);

/*
 * es_alter_subscription(name text, group_size int) RETURNS void
 *
 * Resizes the group.  Streams move between members, so every member of the
 * new group restarts after the lowest checkpoint of the old one: events
 * between that and a member's old checkpoint may be delivered again (at
 * least once).  It waits for acknowledgements in flight; an acknowledgement
 * that comes while it is in flight waits, then fails (55000): its member
 * is gone.  The new members are in a new epoch, so a session that read
 * before the resize cannot acknowledge what it read (40001).
 */
Datum
es_alter_subscription(PG_FUNCTION_ARGS)
{
	char	   *name = es_subscription_name_arg(fcinfo, 0);
	int32		group_size;
	EsSubscription s;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	int64		lowest;
	int32		epoch;
	bool		isnull;
	EsSavedUser saved;

	es_check_not_null(fcinfo, 1, "group_size");
	group_size = PG_GETARG_INT32(1);
	es_check_group_size(group_size);
	PreventCommandIfReadOnly("es_alter_subscription()");

	es_subscription_load(name, -1, false, true, &s);
	/* lock the definition against concurrent resets, resizes and drops */
	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(group_size);
	(void) es_execute_as_owner(psprintf("SELECT FROM %s WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
										es_qualified_name("es_subscription_defs")),
							   1, types, values, NULL, SPI_OK_SELECT);
	es_become_owner(&saved);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* lock the checkpoints: acknowledgements in flight commit first */
	if (SPI_execute_with_args(psprintf("SELECT pg_catalog.min(position), pg_catalog.max(epoch) FROM "
									   "(SELECT position, epoch FROM %s WHERE name OPERATOR(pg_catalog.=) $1 "
									   "FOR UPDATE) m",
									   es_qualified_name("es_subscription_members")),
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "resizing subscription \"%s\" failed", name);
	lowest = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		lowest = 0;
	epoch = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull)
		epoch = 0;
	SPI_finish();
	es_restore_user(&saved);

	(void) es_execute_as_owner(psprintf("DELETE FROM %s WHERE name OPERATOR(pg_catalog.=) $1",
										es_qualified_name("es_subscription_members")),
							   1, types, values, NULL, SPI_OK_DELETE);
	(void) es_execute_as_owner(psprintf("UPDATE %s SET group_size = $2, updated_at = pg_catalog.now() "
										"WHERE name OPERATOR(pg_catalog.=) $1",
										es_qualified_name("es_subscription_defs")),
							   2, types, values, NULL, SPI_OK_UPDATE);
	insert_members(name, group_size, lowest, epoch + 1);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_subscription_reset);

/*
 * es_subscription_reset(name text, position bigint, member int DEFAULT NULL)
 *		RETURNS void
 *
 * Moves a member's checkpoint (every member's when member is NULL) to
 * position, backwards or forwards: it reads after it next.  The member
 * moves to a new epoch, so a session that read before the reset cannot
 * acknowledge what it read (40001) and undo the reset.
 */
Datum
es_subscription_reset(PG_FUNCTION_ARGS)
{
	char	   *name = es_subscription_name_arg(fcinfo, 0);
	int64		position;
	EsSubscription s;
	Oid			types[3] = {TEXTOID, INT8OID, INT4OID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};

	es_check_not_null(fcinfo, 1, "position");
	position = PG_GETARG_INT64(1);
	if (position < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position must not be negative"),
				 errdetail("position was " INT64_FORMAT ".", position)));
	PreventCommandIfReadOnly("es_subscription_reset()");
	es_subscription_load(name, -1, true, true, &s);
	if (!PG_ARGISNULL(2))
		es_check_member_arg(&s, PG_GETARG_INT32(2));

	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(position);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	(void) es_execute_as_owner(psprintf("UPDATE %s SET position = $2, scanned_to = 0, epoch = epoch OPERATOR(pg_catalog.+) 1 "
										"WHERE name OPERATOR(pg_catalog.=) $1 "
										"AND ($3::pg_catalog.int4 IS NULL OR member OPERATOR(pg_catalog.=) $3)",
										es_qualified_name("es_subscription_members")),
							   3, types, values, nulls, SPI_OK_UPDATE);
	PG_RETURN_VOID();
}
