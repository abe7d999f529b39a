/*-------------------------------------------------------------------------
 *
 * event_sourcing.h
 *	  Declarations shared by the event_sourcing extension's C files.
 *
 * Each .c file holds one concern (see ../shared/ARCHITECTURE.md); this
 * header lists what one file offers the others.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_SOURCING_H
#define EVENT_SOURCING_H

#include "postgres.h"

#include "access/genam.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "nodes/execnodes.h"
#include "storage/condition_variable.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

/* Limits from the contract. */
#define ES_MAX_NAME_BYTES	255

/*
 * System events (lifecycle.c): types starting with '$' are the extension's
 * own; users can neither append them nor register upcasters for them.
 */
#define ES_TYPE_STREAM_DELETED	"$StreamDeleted"
#define ES_TYPE_EVENT_REDACTED	"$EventRedacted"
#define ES_IS_SYSTEM_TYPE(p)	(*(const char *) (p) == '$')

/* Column numbers of es_events (1-based, as in the install script). */
#define Anum_es_events_global_position	1
#define Anum_es_events_stream_id		2
#define Anum_es_events_stream_version	3
#define Anum_es_events_event_id			4
#define Anum_es_events_event_type		5
#define Anum_es_events_data				6
#define Anum_es_events_metadata			7
#define Anum_es_events_recorded_at		8
#define Anum_es_events_schema_version	9
#define Natts_es_events					9

/*
 * catalog.c: OIDs of the extension's objects, looked up by name in the
 * extension's schema once and forgotten on relcache invalidation.
 */
typedef struct EsCatalog
{
	Oid			namespace;		/* schema the extension lives in */
	Oid			events;			/* es_events */
	Oid			position_index; /* es_events_pkey (global_position) */
	Oid			stream_index;	/* (stream_id, stream_version) */
	Oid			event_id_index; /* (event_id) */
	Oid			category_index; /* (split_part(stream_id, '-', 1), global_position) */
	Oid			position_seq;	/* es_events_global_position_seq */
	Oid			aggregates;		/* es_aggregates */
	Oid			aggregates_pkey;	/* (category) */
	Oid			snapshots;		/* es_snapshots */
	Oid			snapshots_pkey; /* (stream_id, fingerprint, version) */
	Oid			aggregate_seq;	/* es_aggregate_definition_seq */
	Oid			upcasters;		/* es_upcasters */
	Oid			upcasters_pkey; /* (event_type, from_schema) */
	Oid			projections;	/* es_projection_defs (InvalidOid before 1.1) */
	Oid			dead_letters;	/* es_dead_letters */
	Oid			log_mark;		/* es_log_mark (InvalidOid before 1.3) */
	Oid			owner;			/* owner of es_events: the extension's owner */
	bool		owners;			/* 1.2: definitions have owner, search_path */
} EsCatalog;

/* The user, security context and settings to return to after internal SQL. */
typedef struct EsSavedUser
{
	Oid			userid;
	int			sec_context;
	int			guc_level;
} EsSavedUser;

extern const EsCatalog *es_catalog(void);
extern void es_catalog_init(void);
extern uint64 es_catalog_generation(void);
extern char *es_qualified_name(const char *relname);
extern void es_become_owner(EsSavedUser *saved);
extern void es_restore_user(const EsSavedUser *saved);
extern uint64 es_execute_as_owner(const char *sql, int nargs, Oid *types,
								  Datum *values, const char *nulls, int expected);

/* validate.c: argument checks shared by the SQL-callable functions */
extern void es_check_not_null(FunctionCallInfo fcinfo, int argno, const char *argname);
extern void es_check_name(const char *what, int len);
extern void es_check_stream_id(text *stream_id);
extern void es_check_event_type(const char *what, text *type);
extern void es_check_category(text *category);
extern void es_check_timeout(int32 timeout_ms);
extern void es_check_read_committed(const char *fname, const char *waits_for);
extern Datum *es_check_type_array(struct ArrayType *arr, const char *null_hint, int *n);
extern void es_check_object(Jsonb *jb, const char *what);
extern const char *es_jsonb_kind(Jsonb *jb);
extern const char *es_jsonb_value_kind(const JsonbValue *v);
extern int	es_category_len(text *stream_id);

/* callback.c: user functions called from C */
typedef struct EsCallback
{
	Oid			fn;
	FmgrInfo	flinfo;
	bool		strict;
	/* inline.c: the body compiled to an expression (es_callback_call) */
	MemoryContext mcxt;			/* where the expression state lives */
	int			inline_status;	/* 0 not tried yet, 1 inlined, -1 fmgr call */
	/* what inline_status was decided under: decided again when it moves */
	uint32		lxid;			/* the transaction (LocalTransactionId) */
	uint64		generation;		/* es_catalog_generation() */
	uint64		invals;			/* type/operator/cast/schema changes seen */
	bool		enabled;		/* event_sourcing.inline_sql_callbacks */
	bool		busy;			/* being evaluated: a nested call uses fmgr */
	MemoryContext exec_cxt;		/* child of mcxt: expr, econtext, params */
	struct ExprState *expr;
	struct ExprContext *econtext;
	struct ParamListInfoData *params;
	char	   *fname;
} EsCallback;

extern void es_check_callback(Oid fn, const char *role, int nargs,
							  const Oid *argtypes, Oid rettype);
extern void es_check_execute(Oid fn);
extern void es_callback_init(EsCallback *cb, Oid fn, MemoryContext mcxt);
extern uint64 es_function_fingerprint(Oid fn);

/* callback.c: the one way user code runs (as the owner, restricted) */
typedef struct EsCallScope
{
	Oid			save_userid;
	int			save_sec_context;
	int			guc_level;
} EsCallScope;

/* search_path of definitions made before 1.2 (PostgreSQL's default) */
#define ES_LEGACY_SEARCH_PATH "\"$user\", public, pg_temp"

extern char *es_capture_search_path(void);
extern void es_scope_enter(EsCallScope *scope, Oid owner, const char *search_path);
extern void es_scope_exit(EsCallScope *scope);

/*
 * A scope held across the calls of one read, entered again only when the
 * next call's owner or search_path differs (callback.c).
 */
typedef struct EsScopeHold
{
	bool		open;
	Oid			owner;
	const char *search_path;
	EsCallScope scope;
} EsScopeHold;

#define ES_SCOPE_HOLD_INIT {false, InvalidOid, NULL, {InvalidOid, 0, 0}}

extern void es_scope_hold_enter(EsScopeHold *hold, Oid owner, const char *search_path);
extern void es_scope_hold_release(EsScopeHold *hold);
extern Datum es_callback_invoke(FunctionCallInfo fcinfo);

/* inline.c: a SQL callback whose body is one expression, without executor */
extern Datum es_callback_call(EsCallback *cb, FunctionCallInfo fcinfo);
extern bool es_callback_inlined(EsCallback *cb);
extern bool es_inline_enabled;
extern void es_inline_init(void);
extern char *es_owner_name(Oid owner);
extern void es_check_member(Oid owner, const char *what);
extern void es_check_owner_can_run(Oid owner, Oid fn, const char *what,
								   const char *part);
extern Oid	es_function_owner(Oid fn);

/* snapshot.c: snapshot storage and definition fingerprints */
extern int	es_snapshots_to_keep;
extern int64 es_fingerprint(int64 definition_id, Oid evolve, Oid owner,
							const char *search_path);
extern bool es_snapshot_find(text *stream_id, int64 fingerprint, int64 max_version,
							 int64 *version, Jsonb **state);
extern void es_snapshot_store(text *stream_id, int64 version, int64 fingerprint,
							  Oid owner, Jsonb *state);

/* upcast.c: the upcaster registry and the one upcasting step */
typedef struct EsUpcaster EsUpcaster;

extern int32 es_current_schema(text *event_type);
extern uint64 es_upcast_fingerprint(void);
extern EsUpcaster *es_upcast_begin(void);
extern void es_upcast_end(EsUpcaster *u);
extern bool es_upcast_slot(EsUpcaster *u, TupleTableSlot *slot);
extern bool es_upcast_slot_held(EsUpcaster *u, TupleTableSlot *slot,
								EsScopeHold *hold);
extern bool es_upcast_put(EsUpcaster *u, TupleTableSlot *slot, EsScopeHold *hold,
						  Tuplestorestate *ts, TupleDesc desc);
extern const char *es_upcast_type(EsUpcaster *u, const char *type, int32 schema);

/* audit.c: audit metadata from settings, notifications */
extern char *es_correlation_id;
extern char *es_causation_id;
extern char *es_actor;
extern char *es_notify_channel;
extern void es_audit_init(void);
extern Jsonb *es_audit_metadata(void);
extern Jsonb *es_merge_metadata(Jsonb *audit, Jsonb *metadata);
extern void es_notify_append(text *stream_id);

/* wait.c: es_wait */
extern int	es_wait_poll_interval;
extern void es_wait_init(void);
extern void es_note_append(void);
extern void es_note_projection_change(void);
extern bool es_event_after(int64 after, int64 upto);
extern bool es_wait_for_log(int64 after, TimestampTz deadline, int64 *mark);
extern bool es_poll_sleep(TimestampTz deadline, long poll_ms);
extern void es_check_client(void);
#define ES_MAX_WORKERS 64		/* databases with a background worker */
typedef struct EsWorkerWake EsWorkerWake;
extern EsWorkerWake *es_worker_claim(const char *dbname, pid_t *holder);
extern pid_t es_worker_holder(const char *dbname);
extern int	es_worker_holders(char (*dbnames)[NAMEDATALEN], pid_t *pids, int max);
extern uint64 es_worker_wakes(EsWorkerWake *w);
extern void es_worker_wake_set_interest(EsWorkerWake *w, bool has_async);
extern bool es_worker_attach_mark_writer(void);

/* uuidv7.c: time-ordered event ids */
extern void es_uuidv7(pg_uuid_t *uuid);
extern void es_uuid_for_command(const pg_uuid_t *command_id, int i, pg_uuid_t *out);

/* aggregate.c: what snapshots of a stream must be made by */
extern int64 es_stream_fingerprint(text *stream_id);
extern int64 es_stream_aggregate(text *stream_id, Oid *owner);

/* One event to append, after validation. */
typedef struct EsEventInput
{
	text	   *type;
	Jsonb	   *data;
	Jsonb	   *metadata;
	Jsonb	   *original_metadata;	/* before audit keys were merged in */
	pg_uuid_t	id;
	bool		id_given;
} EsEventInput;

/* batch.c: the batch form of es_append */
extern Jsonb *es_empty_object(void);
extern EsEventInput *es_parse_batch(Jsonb *events, int *n);

/* append.c: appending a JSON array of events (es_execute uses it) */
extern int64 es_append_batch_jsonb(text *stream_id, bool any_version,
								   int64 expected, Jsonb *events,
								   const pg_uuid_t *command_id);
/*
 * append.c: es_events opened for inserting through the executor's simple
 * insert path (es_append, es_import).
 */
typedef struct EsAppendState
{
	Relation	rel;
	struct EState *estate;
	struct ResultRelInfo *rri;
	TupleTableSlot *slot;
	Relation	stream_index;
	Relation	event_id_index;
	bool		dispatch_inline;	/* the inline projection trigger dispatches */
} EsAppendState;

extern void es_store_open(EsAppendState *st);
extern void es_store_close(EsAppendState *st);
extern void es_store_lock_stream(text *stream_id);
extern bool es_store_try_lock_stream(text *stream_id, bool dont_wait);
extern int64 es_store_peek_head(EsAppendState *st, text *stream_id,
								TimestampTz *last_recorded, bool *deleted);
extern int64 es_store_read_head(EsAppendState *st, text *stream_id,
								TimestampTz *last_recorded);
extern int64 es_store_head(EsAppendState *st, text *stream_id,
						   TimestampTz *last_recorded);
extern bool es_is_tombstone(text *type);
extern void es_stream_deleted_error(Relation rel, text *stream_id,
									int64 tombstone_version,
									TimestampTz deleted_at);
extern void es_check_expected_range(int64 expected);
extern void es_check_expected_version(Relation rel, text *stream_id,
									  bool any_version, int64 expected,
									  int64 current);
extern int64 es_append_system(text *stream_id, const char *type, Jsonb *data);
extern void es_store_fill(TupleTableSlot *slot, text *stream_id, int64 version,
						  EsEventInput *ev, TimestampTz recorded_at,
						  int32 schema_version, int64 position);
extern void es_store_insert(EsAppendState *st, text *stream_id, int64 version,
							EsEventInput *ev, TimestampTz recorded_at,
							int32 schema_version, Oid seqoid);

/* lifecycle.c: deleting, truncating, redacting, the erasure audit */
extern void es_lifecycle_prepare(const char *fname);
extern void es_erasure_record(const char *operation, text *stream_id,
							  pg_uuid_t *event_id, const char *category,
							  int64 from_version, int64 to_version,
							  int64 event_count, struct ArrayType *paths,
							  text *reason);
extern int64 es_delete_versions(EsAppendState *st, text *stream_id, int64 from,
								int64 to, TimestampTz before, int64 limit);
extern void es_delete_snapshots(text *stream_id, int64 from, int64 to);

/* append.c: is es_append firing the row triggers of its own inserts? */
extern bool es_append_firing(void);
extern void es_append_firing_suspend(void);
extern void es_append_firing_resume(void);

/* position.c: the safe bound of the global log, drawing positions */
extern int64 es_high_water_mark(const EsCatalog *cat, int64 known_position);
extern int64 es_next_position(Oid seqoid);
extern int64 es_log_last_position(const EsCatalog *cat);
extern void es_position_init(void);

/* head_cache.c: stream heads in shared memory (when preloaded) */
extern void es_head_cache_init(void);
extern bool es_head_cache_get(Oid relid, text *stream_id, int64 *version,
							  TimestampTz *recorded_at);
extern void es_head_cache_put(Oid relid, text *stream_id, int64 version,
							  TimestampTz recorded_at);
extern void es_head_cache_forget(text *stream_id);

/* mark.c: the bound published for hot standbys and logical replicas */
extern int	es_log_mark_interval;
extern bool es_log_is_remote(const EsCatalog *cat);
extern int64 es_log_mark_read(const EsCatalog *cat);
extern void es_check_log_writable(void);
extern void es_log_mark_supervise(const char *dbname);
extern void es_log_mark_init(void);

/* read.c: reading one stream, for the fold */
typedef struct EsStreamScan
{
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData keys[3];
} EsStreamScan;

extern EsStreamScan *es_stream_scan_begin(text *stream_id, int64 from, int64 to,
										  Snapshot snapshot);
extern TupleTableSlot *es_stream_scan_next(EsStreamScan *s);
extern void es_stream_scan_end(EsStreamScan *s);
extern int64 es_stream_head(text *stream_id, const TimestampTz *as_of);
extern bool es_latest_lookup(Oid indexoid, ScanKey keys, int nkeys, text **stream,
							 int64 *version);
extern bool es_event_location(const pg_uuid_t *id, text **stream, int64 *version);

/* read.c: reading the global log (read functions, async projections) */
typedef struct EsLogScan
{
	int64		high;			/* the high-water mark: nothing past it */
	bool		complete;		/* at the end, every event <= high was seen */
	bool		done;
	MemoryContext mcxt;			/* the scan's state lives here */
	Relation	rel;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	latest;
	Snapshot	xact;
	EsUpcaster *upcaster;
	EsScopeHold *hold;			/* upcasters' scope held across events, or NULL */
	/* events it rejects are passed over before upcasting (subscriptions) */
	bool		(*accept) (TupleTableSlot *slot, void *arg);
	void	   *accept_arg;
	int64		last_seen;		/* position of the last event examined */
	ScanKeyData keys[2];
} EsLogScan;

extern EsLogScan *es_log_scan_begin(text *category, int64 after);
extern TupleTableSlot *es_log_scan_next(EsLogScan *s);
extern void es_log_scan_end(EsLogScan *s);
extern void es_begin_result(FunctionCallInfo fcinfo);
extern void es_result_put(ReturnSetInfo *rsinfo, TupleTableSlot *slot);

/* Columns of es_projection_defs (1-based, as in the 1.0--1.1 script). */
#define Anum_es_projection_defs_name			1
#define Anum_es_projection_defs_handler			2
#define Anum_es_projection_defs_event_types		3
#define Anum_es_projection_defs_mode			4
#define Anum_es_projection_defs_reset			5
#define Anum_es_projection_defs_owner			6
#define Anum_es_projection_defs_position		7
#define Anum_es_projection_defs_status			8
#define Anum_es_projection_defs_last_error		9
#define Anum_es_projection_defs_failed_position	10
#define Anum_es_projection_defs_defined_at		11
#define Anum_es_projection_defs_updated_at		12
#define Natts_es_projection_defs				12
#define Anum_es_projection_defs_search_path		13	/* 1.2 */

/* projection.c: one projection definition, ready to call */
typedef struct EsProjection
{
	char	   *name;
	Oid			handler;
	Oid			reset;			/* InvalidOid: none */
	Oid			owner;			/* handlers run as this role */
	char	   *search_path;	/* ... with this search_path */
	bool		is_inline;
	int			ntypes;			/* -1: every event type */
	char	  **types;			/* sorted */
	int64		position;		/* async: the checkpoint */
	bool		failed;
	int64		failed_position;
	char	   *last_error;		/* NULL: none */
	TimestampTz updated_at;
	bool		ready;			/* cb is set up (es_projection_prepare) */
	EsCallback	cb;
	struct _SPI_plan *sqlplan;	/* one-statement SQL handler, planned once */
	bool		sql_readonly;	/* run it read-only (not VOLATILE) */
	Oid			event_type;		/* the row type of es_events */
} EsProjection;

extern const EsCatalog *es_projections_available(void);
extern void es_projection_from_tuple(HeapTuple tup, TupleDesc desc, EsProjection *p,
									 MemoryContext mcxt);
extern void es_projection_prepare(EsProjection *p, MemoryContext mcxt);
extern bool es_projection_matches(const EsProjection *p, const char *type);
extern void es_projection_apply(const EsProjection *p, TupleTableSlot *slot, int64 position,
								bool in_scope);
extern void es_projection_call_reset(const EsProjection *p);
extern void es_projection_check_owner(const char *name, Oid owner);
extern void es_projection_not_found(const char *name);
extern char *es_projection_name_arg(FunctionCallInfo fcinfo, int argno);

/* How es_projection_read reads a definition, and what it found. */
typedef enum EsLockMode
{
	ES_LOCK_NONE,
	ES_LOCK_WAIT,				/* FOR UPDATE */
	ES_LOCK_SKIP				/* FOR UPDATE SKIP LOCKED */
} EsLockMode;

typedef enum EsFound
{
	ES_FOUND,
	ES_MISSING,
	ES_LOCKED					/* exists, another run holds it */
} EsFound;

extern EsFound es_projection_read(const char *name, EsLockMode lock, EsProjection *p);
extern void es_projection_read_owned(const char *name, EsProjection *p);


/* projection_run.c: driving async projections (SQL functions, the worker) */
extern int64 es_projection_run_all(int32 max_events, int retry_failed_ms,
									long *retry_due_ms, bool *has_async);

/* worker.c: the background workers (settings shared with launcher.c) */
extern char *es_worker_databases;
extern int	es_worker_restart_interval;
extern bool es_worker_reload_config(void);
extern List *es_worker_listed_databases(void);
extern bool es_worker_name_in_list(List *names, const char *dbname);
extern void es_worker_init(void);

/* retention.c: retention policies */
extern int	es_retention_interval;
extern int	es_retention_duty_cycle;

#endif							/* EVENT_SOURCING_H */
