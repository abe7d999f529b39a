/* event_sourcing--1.0.sql: the event store */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION event_sourcing" to load this file. \quit

--
-- The global position sequence.  CACHE 1 is required: the read paths compute
-- the safe end of the global log from this sequence's last value (see
-- src/position.c), which is only a bound when no backend holds cached values.
--
CREATE SEQUENCE @extschema@.es_events_global_position_seq
    AS bigint START WITH 1 INCREMENT BY 1 NO CYCLE CACHE 1;

--
-- The event store.  Written only by es_append (direct heap access from C);
-- UPDATE, DELETE and TRUNCATE are refused by the trigger below.
--
CREATE TABLE @extschema@.es_events (
    global_position bigint NOT NULL,
    stream_id       text COLLATE "C" NOT NULL,
    stream_version  bigint NOT NULL,
    event_id        uuid NOT NULL,
    event_type      text COLLATE "C" NOT NULL,
    data            jsonb NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL,
    schema_version  integer NOT NULL DEFAULT 1,
    CONSTRAINT es_events_pkey PRIMARY KEY (global_position),
    CONSTRAINT es_events_stream_version_key UNIQUE (stream_id, stream_version),
    CONSTRAINT es_events_event_id_key UNIQUE (event_id)
);

ALTER SEQUENCE @extschema@.es_events_global_position_seq
    OWNED BY @extschema@.es_events.global_position;

-- es_read_category: events of one category in global order.
CREATE INDEX es_events_category_idx ON @extschema@.es_events
    (pg_catalog.split_part(stream_id, '-'::text, 1), global_position);

COMMENT ON TABLE @extschema@.es_events IS
    'Event store (append-only). Append with es_append; read with es_load, es_read_all, es_read_category.';

-- pg_dump keeps the events and the position sequence.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_events', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_events_global_position_seq', '');

--
-- Immutability: refuse UPDATE, DELETE and TRUNCATE for every role, the owner
-- included, and also under session_replication_role = replica (ENABLE ALWAYS).
--
CREATE FUNCTION @extschema@._es_refuse_change()
    RETURNS trigger
    AS 'MODULE_PATHNAME', 'es_refuse_change'
    LANGUAGE C;

CREATE TRIGGER es_events_immutable
    BEFORE UPDATE OR DELETE OR TRUNCATE ON @extschema@.es_events
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._es_refuse_change();

ALTER TABLE @extschema@.es_events ENABLE ALWAYS TRIGGER es_events_immutable;

--
-- Appending
--
CREATE FUNCTION @extschema@.es_append(stream_id text, expected_version bigint,
                                      event_type text, data jsonb,
                                      metadata jsonb DEFAULT '{}'::jsonb,
                                      event_id uuid DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_append'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_append(text, bigint, text, jsonb, jsonb, uuid) IS
    'Append one event to a stream if its version matches expected_version (NULL: any, 0: no stream, -1: exists); returns the new version';

CREATE FUNCTION @extschema@.es_append(stream_id text, expected_version bigint,
                                      events jsonb)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_append_batch'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_append(text, bigint, jsonb) IS
    'Append a JSON array of events [{"type","data","metadata"?,"id"?}] atomically; returns the new version';

--
-- Reading
--
CREATE FUNCTION @extschema@.es_load(stream_id text, from_version bigint DEFAULT 1,
                                    to_version bigint DEFAULT NULL)
    RETURNS SETOF @extschema@.es_events
    AS 'MODULE_PATHNAME', 'es_load'
    LANGUAGE C STABLE PARALLEL SAFE ROWS 100;

COMMENT ON FUNCTION @extschema@.es_load(text, bigint, bigint) IS
    'Events of one stream ordered by version, bounds inclusive (to_version NULL: to the end)';

CREATE FUNCTION @extschema@.es_stream_version(stream_id text, as_of timestamptz DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_stream_version'
    LANGUAGE C STABLE PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.es_stream_version(text, timestamptz) IS
    'Current version of a stream, or its version as of a point in time; 0 if it has no events';

CREATE FUNCTION @extschema@.es_read_all(after_position bigint DEFAULT 0,
                                        max_count integer DEFAULT 1000)
    RETURNS SETOF @extschema@.es_events
    AS 'MODULE_PATHNAME', 'es_read_all'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;

COMMENT ON FUNCTION @extschema@.es_read_all(bigint, integer) IS
    'The global log after a position, in global order, never skipping an event committed late';

CREATE FUNCTION @extschema@.es_read_category(category text, after_position bigint DEFAULT 0,
                                             max_count integer DEFAULT 1000)
    RETURNS SETOF @extschema@.es_events
    AS 'MODULE_PATHNAME', 'es_read_category'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;

COMMENT ON FUNCTION @extschema@.es_read_category(text, bigint, integer) IS
    'Events of one category (stream_id up to the first "-") after a position, in global order';

CREATE FUNCTION @extschema@.es_safe_position()
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_safe_position'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_safe_position() IS
    'The high-water mark of the global log: every event at or below it is committed or will never exist';

--
-- Aggregates and snapshots
--
CREATE SEQUENCE @extschema@.es_aggregate_definition_seq AS bigint;

-- One aggregate per category: how to fold a stream's events into a state.
CREATE TABLE @extschema@.es_aggregates (
    category        text COLLATE "C" NOT NULL,
    evolve          regprocedure NOT NULL,
    initial_state   jsonb NOT NULL,
    decide          regprocedure,
    snapshot_every  integer NOT NULL,
    definition_id   bigint NOT NULL,
    defined_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT es_aggregates_pkey PRIMARY KEY (category)
);

COMMENT ON TABLE @extschema@.es_aggregates IS
    'Aggregate definitions, one per category; written by es_define_aggregate.';

-- Folded states.  fingerprint identifies the definition and evolve function
-- that produced the state (0: saved for a category without aggregate).
CREATE TABLE @extschema@.es_snapshots (
    stream_id       text COLLATE "C" NOT NULL,
    version         bigint NOT NULL,
    fingerprint     bigint NOT NULL,
    state           jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT es_snapshots_pkey PRIMARY KEY (stream_id, fingerprint, version)
);

COMMENT ON TABLE @extschema@.es_snapshots IS
    'Snapshots of folded stream states; a cache that es_aggregate fills and reads.';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_aggregates', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_aggregate_definition_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_snapshots', '');

CREATE FUNCTION @extschema@.es_snapshot_save(stream_id text, version bigint, state jsonb)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_snapshot_save'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_snapshot_save(text, bigint, jsonb) IS
    'Store the state of a stream after a version it has';

CREATE FUNCTION @extschema@.es_snapshot_load(stream_id text, max_version bigint DEFAULT NULL)
    RETURNS TABLE(version bigint, state jsonb)
    AS 'MODULE_PATHNAME', 'es_snapshot_load'
    LANGUAGE C STABLE PARALLEL SAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.es_snapshot_load(text, bigint) IS
    'The newest usable snapshot of a stream at or below max_version; no row if none';

CREATE FUNCTION @extschema@._es_stream_fingerprint(stream_id text)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_stream_fingerprint_sql'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@._es_stream_fingerprint(text) IS
    'Internal: the fingerprint a snapshot of this stream needs to be usable now';

CREATE FUNCTION @extschema@.es_snapshot_prune(keep integer DEFAULT 1, stream_id text DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_snapshot_prune'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_snapshot_prune(integer, text) IS
    'Delete all but the newest keep snapshots of a stream (NULL: of every stream); returns how many';

CREATE FUNCTION @extschema@.es_define_aggregate(category text, evolve regprocedure,
                                                initial_state jsonb DEFAULT '{}'::jsonb,
                                                decide regprocedure DEFAULT NULL,
                                                snapshot_every integer DEFAULT 100)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_define_aggregate'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_define_aggregate(text, regprocedure, jsonb, regprocedure, integer) IS
    'Define (or redefine) the aggregate of a category: evolve(state, event), initial state, decide(state, command), snapshot interval';

CREATE FUNCTION @extschema@.es_aggregate(stream_id text, to_version bigint DEFAULT NULL)
    RETURNS TABLE(version bigint, state jsonb)
    AS 'MODULE_PATHNAME', 'es_aggregate'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.es_aggregate(text, bigint) IS
    'The state of a stream at a version (NULL: now), folded from the newest usable snapshot';

CREATE FUNCTION @extschema@.es_aggregate_at(stream_id text, as_of timestamptz)
    RETURNS TABLE(version bigint, state jsonb)
    AS 'MODULE_PATHNAME', 'es_aggregate_at'
    LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1;

COMMENT ON FUNCTION @extschema@.es_aggregate_at(text, timestamptz) IS
    'The state of a stream as of a point in time';

CREATE FUNCTION @extschema@.es_execute(stream_id text, command jsonb)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_execute'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_execute(text, jsonb) IS
    'Fold the stream, call decide(state, command), append its events at the folded version; returns the new version';

CREATE FUNCTION @extschema@.es_fold_count()
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_fold_count'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_fold_count() IS
    'Events this session has passed to evolve functions (evidence of snapshot use)';

--
-- Schema evolution and waiting
--

-- Upcasters: chains per event type, from schema 1 without gaps.
CREATE TABLE @extschema@.es_upcasters (
    event_type      text COLLATE "C" NOT NULL,
    from_schema     integer NOT NULL,
    upcast          regprocedure NOT NULL,
    to_type         text COLLATE "C",
    defined_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT es_upcasters_pkey PRIMARY KEY (event_type, from_schema)
);

COMMENT ON TABLE @extschema@.es_upcasters IS
    'Upcasters: upcast turns data of event_type from schema from_schema into from_schema + 1; written by es_define_upcaster.';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.es_upcasters', '');

CREATE FUNCTION @extschema@.es_define_upcaster(event_type text, from_schema integer,
                                               upcast regprocedure, to_type text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'es_define_upcaster'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_define_upcaster(text, integer, regprocedure, text) IS
    'Register upcast(data) as the step from schema from_schema to from_schema + 1 of event_type, optionally renaming it';

CREATE FUNCTION @extschema@.es_wait(after_position bigint, timeout_ms integer DEFAULT 10000)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_wait'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_wait(bigint, integer) IS
    'Wait until the safe global log holds an event after after_position, or the timeout; returns the newest safe position (after_position on timeout)';

--
-- Privileges: the functions are the API.  Nothing is granted to PUBLIC; grant
-- EXECUTE on the functions a role needs (see README, "Privileges").
--
REVOKE ALL ON TABLE @extschema@.es_events FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.es_events_global_position_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_append(text, bigint, text, jsonb, jsonb, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_append(text, bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_load(text, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_stream_version(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_read_all(bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_read_category(text, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_safe_position() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._es_refuse_change() FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.es_aggregates FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.es_snapshots FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.es_aggregate_definition_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_snapshot_save(text, bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_snapshot_load(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_snapshot_prune(integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._es_stream_fingerprint(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_define_aggregate(text, regprocedure, jsonb, regprocedure, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_aggregate(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_aggregate_at(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_execute(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_fold_count() FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.es_upcasters FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_define_upcaster(text, integer, regprocedure, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.es_wait(bigint, integer) FROM PUBLIC;
