/*-------------------------------------------------------------------------
 *
 * head_cache.c
 *	  A shared cache of stream heads, so that an append to a stream that was
 *	  appended to recently skips reading the head from the index.
 *
 * es_append locks the stream and then needs the stream's current version and
 * the recorded_at of its last event.  Reading them from es_events is a
 * descent of the (stream_id, stream_version) index plus a fetch of the last
 * heap row, on top of the descent that inserting into the same unique index
 * makes anyway: about a tenth of an append's time on a large store.  With
 * the library preloaded, every append leaves (stream, version, recorded_at,
 * the inserting (sub)transaction's id) in a fixed array in shared memory,
 * and the next append to the stream takes the head from there.
 *
 * The array has event_sourcing.head_cache_size entries (set at server start;
 * 0: no cache), grouped in sets of ES_HEAD_CACHE_WAYS (4) entries: a hash of
 * (database, es_events relation, stream id) picks the set, and the stream
 * may sit in any entry of it.  A stream whose set is full evicts the entry
 * used least recently, so streams appended to often keep their entries
 * even when other streams hash to the same set.  (With one entry per hash,
 * as this cache had at first, two busy streams sharing one missed about half
 * of their appends each: 7.6% of all appends missed with 10,000 streams
 * appended to at random and 65,536 entries, against 0.07% with sets of
 * four; bench/append_cache_stats.sh counts them.)  An entry holds the
 * whole stream id and is used only when the id is equal byte for byte;
 * a set also keeps each entry's hash, compared first.  Each set has a
 * spinlock; readers and writers copy under it and call nothing else while
 * holding it.
 *
 * A set holds at most one entry for a stream that is not forgotten: a
 * writer looks for the stream's entry first and overwrites it, and takes a
 * free or the least recently used entry only when the set has none.  (All
 * of it under the set's spinlock, and under the stream lock, which every
 * writer of the stream's entry holds.)  So an entry found for the stream is
 * the one its last cache-writing append wrote, as the argument below needs.
 *
 * Why an entry that is found is the head.  Appenders to a stream are
 * serialised by the stream lock (append.c), held to the end of the
 * transaction, and every append writes the entry while it holds the lock,
 * after its rows are inserted and before its triggers fire.  So when an
 * appender holds the lock and finds an entry for its stream, the entry was
 * written by the last append to the stream that wrote one; if that append's
 * (sub)transaction committed, or is the appender's own transaction (itself
 * or a subtransaction still alive), no rows of the stream were stored after
 * it, and the entry is the head.  If it aborted (ROLLBACK, ROLLBACK TO
 * SAVEPOINT, ROLLBACK PREPARED, an error), its rows are gone and the entry
 * says nothing: the head is read from the index.  Anything that is not
 * known to be committed or ours falls back to the index in the same way:
 *
 *	- An in-progress transaction of another backend cannot have written the
 *	  entry, as it would hold the lock.  (A subtransaction's lock is released
 *	  when it rolls back, but then its xid has aborted.)
 *	- A prepared transaction holds the stream lock until COMMIT PREPARED or
 *	  ROLLBACK PREPARED, which mark it committed or aborted before the lock
 *	  is released.
 *	- The status of an old transaction id is unknown once the commit log
 *	  (pg_xact) is truncated past it: asking would fail with "could not
 *	  access status of transaction".  Entries hold the full (epoch-qualified)
 *	  transaction id; one that is 2^31 or more behind the next transaction
 *	  id, or older than the oldest one pg_xact still holds
 *	  (oldestClogXid, read under XactTruncationLock, which is held while the
 *	  status is looked up, as pg_xact_status() does), is not used.
 *
 * Other paths of es_append: es_execute appends through the same function.
 * An idempotent retry returns before inserting and writes nothing; a
 * failed expected-version check raises an error before writing.  The
 * recorded_at kept is the last event's, so the clamp that keeps a stream's
 * recorded_at from decreasing works as with the index.  An append made by
 * a row trigger of es_events inside another append (an inline projection
 * handler appending to the same stream) finds the outer append's entry,
 * written before those triggers fire, and its own entry is the later one.
 *
 * Everything else that adds rows to es_events must forget the entries of
 * the streams it touches: es_import calls es_head_cache_forget for every
 * stream it imports into (it holds an EXCLUSIVE lock on es_events, so no
 * appender writes an entry until it ends).  A restart (or crash) starts
 * with an empty array; DROP and CREATE EXTENSION make a new es_events with
 * a new OID, which no entry names; VACUUM FULL keeps the rows.  An
 * idempotent retry inserts nothing and writes nothing.  Rows inserted into
 * es_events directly (a superuser's INSERT or COPY into a database whose
 * es_events has events) are not seen: the cache then gives an older head,
 * and the next es_append to such a stream fails on the unique index
 * (stream_id, stream_version) or its expected-version check until the
 * server restarts; pg_restore goes into a fresh database, whose OIDs no
 * entry names.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"

#include "event_sourcing.h"

/* the shared variables of transam.h (renamed in PostgreSQL 17) */
#if PG_VERSION_NUM >= 170000
#define ES_TRANSAM_VARIABLES TransamVariables
#else
#define ES_TRANSAM_VARIABLES ShmemVariableCache
#endif

/*
 * Stream ids up to this long are cached (most are: "order-" and a UUID is
 * 42 bytes); longer ones always read their head from the index.  Keeps an
 * entry near 115 bytes (with its share of the set's header), so a cache
 * that covers many streams stays small.
 */
#define ES_HEAD_CACHE_STREAM_BYTES 64

/* event_sourcing.head_cache_size */
static int	head_cache_size = 65536;

/* entries of a set (fewer when head_cache_size is smaller) */
#define ES_HEAD_CACHE_WAYS 4

/* One stream's head, or nothing (fxid invalid). */
typedef struct EsHeadEntry
{
	uint8		len;			/* bytes of the stream id */
	Oid			dbid;
	Oid			relid;			/* es_events */
	FullTransactionId fxid;		/* the (sub)transaction that appended */
	int64		version;
	TimestampTz recorded_at;	/* of the event at 'version' */
	char		stream[ES_HEAD_CACHE_STREAM_BYTES];
} EsHeadEntry;

/*
 * The entries a stream may sit in.  hash[i] is the hash of entry i's stream
 * (meaningful when its fxid is valid), used[i] the value of clock when it
 * was last read or written: the least recently used entry has the largest
 * clock - used[i] (unsigned, so the counter may wrap).
 */
typedef struct EsHeadSet
{
	slock_t		mutex;
	uint32		clock;
	uint32		hash[ES_HEAD_CACHE_WAYS];
	uint32		used[ES_HEAD_CACHE_WAYS];
	EsHeadEntry way[ES_HEAD_CACHE_WAYS];
} EsHeadSet;

/* NULL when not preloaded or the size is 0 */
static EsHeadSet *head_cache = NULL;
static int	head_cache_sets = 0;
static int	head_cache_ways = 0;	/* entries used of each set */

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * head_cache_geometry
 *		Entries per set and sets for head_cache_size entries (> 0): sets of
 *		ES_HEAD_CACHE_WAYS, or one smaller set; a remainder is not used.
 */
static void
head_cache_geometry(int *ways, int *sets)
{
	*ways = Min(head_cache_size, ES_HEAD_CACHE_WAYS);
	*sets = head_cache_size / *ways;
}

/*
 * head_cache_shmem_size
 *		Bytes of the array of sets.
 */
static Size
head_cache_shmem_size(void)
{
	int			ways;
	int			sets;

	head_cache_geometry(&ways, &sets);
	return mul_size(sets, sizeof(EsHeadSet));
}

/*
 * head_cache_shmem_request
 *		Reserve the array (PostgreSQL 15: from shmem_request_hook).
 */
static void
head_cache_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	if (head_cache_size > 0)
		RequestAddinShmemSpace(MAXALIGN(head_cache_shmem_size()));
}

/*
 * head_cache_shmem_startup
 *		Create (empty) or attach to the array.
 */
static void
head_cache_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	if (head_cache_size <= 0)
		return;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	head_cache = ShmemInitStruct("event_sourcing stream heads",
								 head_cache_shmem_size(), &found);
	head_cache_geometry(&head_cache_ways, &head_cache_sets);
	if (!found)
	{
		for (int i = 0; i < head_cache_sets; i++)
		{
			EsHeadSet  *set = &head_cache[i];

			SpinLockInit(&set->mutex);
			set->clock = 0;
			for (int w = 0; w < ES_HEAD_CACHE_WAYS; w++)
			{
				set->hash[w] = 0;
				set->used[w] = 0;
				set->way[w].len = 0;
				set->way[w].fxid = InvalidFullTransactionId;
			}
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * es_head_cache_init
 *		The setting and, when preloaded, the shared array; from _PG_init.
 *
 * A PGC_POSTMASTER setting can only be defined while preloading: without
 * preload there is neither the setting nor the cache.
 */
void
es_head_cache_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("event_sourcing.head_cache_size",
							"Entries of the shared cache of stream heads (0 disables it).",
							"es_append takes a stream's version from the cache when the stream "
							"was appended to recently, instead of reading it from the index. "
							"Each entry takes about 115 bytes of shared memory; stream ids longer "
							"than 64 bytes are not cached. Needs the library in "
							"shared_preload_libraries.",
							&head_cache_size,
							65536, 0, 4194304,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = head_cache_shmem_request;
#else
	head_cache_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = head_cache_shmem_startup;
}

/*
 * head_set
 *		The set a stream maps to, and the stream's hash in *hash; NULL when
 *		there is no cache or the stream id is too long to be kept.
 */
static EsHeadSet *
head_set(Oid relid, text *stream_id, uint32 *hash)
{
	uint32		h;
	int			len = VARSIZE_ANY_EXHDR(stream_id);

	if (head_cache == NULL || len > ES_HEAD_CACHE_STREAM_BYTES)
		return NULL;
	h = DatumGetUInt32(hash_any((const unsigned char *) VARDATA_ANY(stream_id), len));
	h = hash_combine(h, murmurhash32((uint32) relid));
	h = hash_combine(h, murmurhash32((uint32) MyDatabaseId));
	*hash = h;
	return &head_cache[h % (uint32) head_cache_sets];
}

/*
 * set_find
 *		The entry of the set that holds this stream, or -1.  Called under
 *		the set's spinlock.
 */
static inline int
set_find(EsHeadSet *set, uint32 hash, Oid relid, text *stream_id)
{
	int			len = VARSIZE_ANY_EXHDR(stream_id);

	for (int w = 0; w < head_cache_ways; w++)
	{
		EsHeadEntry *e = &set->way[w];

		if (set->hash[w] == hash && FullTransactionIdIsValid(e->fxid) &&
			e->dbid == MyDatabaseId && e->relid == relid && e->len == len &&
			memcmp(e->stream, VARDATA_ANY(stream_id), len) == 0)
			return w;
	}
	return -1;
}

/*
 * set_victim
 *		The entry of the set to write a stream that it does not hold into:
 *		a free (forgotten or never written) one, else the least recently
 *		used.  Called under the set's spinlock.
 */
static inline int
set_victim(EsHeadSet *set)
{
	int			victim = 0;
	uint32		oldest = 0;

	for (int w = 0; w < head_cache_ways; w++)
	{
		uint32		age = set->clock - set->used[w];

		if (!FullTransactionIdIsValid(set->way[w].fxid))
			return w;
		if (age >= oldest)
		{
			oldest = age;
			victim = w;
		}
	}
	return victim;
}

/*
 * appender_committed_or_ours
 *		Did the (sub)transaction fxid commit, or is it part of the current
 *		transaction (not rolled back)?  False when its status is not known.
 */
static bool
appender_committed_or_ours(FullTransactionId fxid)
{
	FullTransactionId next;
	TransactionId xid = XidFromFullTransactionId(fxid);
	bool		result = false;

	/* holds off pg_xact truncation until the status has been read */
	LWLockAcquire(XactTruncationLock, LW_SHARED);
	next = ReadNextFullTransactionId();

	/*
	 * Less than 2^31 behind the next xid: the 32-bit xid names fxid alone
	 * and compares correctly with oldestClogXid, which is never further
	 * behind.  Not older than oldestClogXid: pg_xact has its status.
	 */
	if (FullTransactionIdPrecedes(fxid, next) &&
		U64FromFullTransactionId(next) - U64FromFullTransactionId(fxid) <
		(uint64) (MaxTransactionId >> 1) &&
		!TransactionIdPrecedes(xid, ES_TRANSAM_VARIABLES->oldestClogXid))
		result = TransactionIdIsCurrentTransactionId(xid) ||
			TransactionIdDidCommit(xid);
	LWLockRelease(XactTruncationLock);
	return result;
}

/*
 * es_head_cache_get
 *		The stream's version and last recorded_at from the cache, if the
 *		entry is known to be its head (see the file header).  The caller
 *		holds the stream lock.
 */
bool
es_head_cache_get(Oid relid, text *stream_id, int64 *version,
				  TimestampTz *recorded_at)
{
	uint32		hash;
	EsHeadSet  *set = head_set(relid, stream_id, &hash);
	FullTransactionId fxid = InvalidFullTransactionId;
	int64		v = 0;
	TimestampTz t = 0;
	int			w;

	if (set == NULL)
		return false;

	SpinLockAcquire(&set->mutex);
	w = set_find(set, hash, relid, stream_id);
	if (w >= 0)
	{
		EsHeadEntry *e = &set->way[w];

		fxid = e->fxid;
		v = e->version;
		t = e->recorded_at;
		set->used[w] = ++set->clock;
	}
	SpinLockRelease(&set->mutex);

	if (!FullTransactionIdIsValid(fxid) || !appender_committed_or_ours(fxid))
		return false;
	*version = v;
	*recorded_at = t;
	return true;
}

/*
 * es_head_cache_put
 *		Record the stream's new head, appended by the current
 *		(sub)transaction, which has inserted rows (so has an xid).  The
 *		caller holds the stream lock.  Cannot fail.
 *
 * Into the stream's entry if its set has one (so that the set never holds
 * two), else into a free or the least recently used entry of the set.
 */
void
es_head_cache_put(Oid relid, text *stream_id, int64 version,
				  TimestampTz recorded_at)
{
	uint32		hash;
	EsHeadSet  *set = head_set(relid, stream_id, &hash);
	FullTransactionId fxid;
	int			len = VARSIZE_ANY_EXHDR(stream_id);
	EsHeadEntry *e;
	int			w;

	if (set == NULL)
		return;
	fxid = GetCurrentFullTransactionId();

	SpinLockAcquire(&set->mutex);
	w = set_find(set, hash, relid, stream_id);
	if (w < 0)
		w = set_victim(set);
	e = &set->way[w];
	e->dbid = MyDatabaseId;
	e->relid = relid;
	e->len = (uint8) len;
	memcpy(e->stream, VARDATA_ANY(stream_id), len);
	e->version = version;
	e->recorded_at = recorded_at;
	e->fxid = fxid;
	set->hash[w] = hash;
	set->used[w] = ++set->clock;
	SpinLockRelease(&set->mutex);
}

/*
 * es_head_cache_forget
 *		Forget the stream's head in this database's es_events: for writers
 *		other than es_append (es_import), before they add rows to it.  The
 *		entry becomes free.
 */
void
es_head_cache_forget(text *stream_id)
{
	Oid			relid;
	uint32		hash;
	EsHeadSet  *set;
	int			w;

	if (head_cache == NULL)
		return;
	relid = es_catalog()->events;
	set = head_set(relid, stream_id, &hash);
	if (set == NULL)
		return;

	SpinLockAcquire(&set->mutex);
	w = set_find(set, hash, relid, stream_id);
	if (w >= 0)
		set->way[w].fxid = InvalidFullTransactionId;
	SpinLockRelease(&set->mutex);
}
